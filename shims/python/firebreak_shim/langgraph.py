"""LangGraph: guard conditional edges and ``Command(goto=...)`` handoffs.

A refused edge pauses the thread with ``interrupt()``; the thread stays resumable, so rollback
is ``graph.invoke(Command(resume=...), config)`` once Firebreak has released the edge. On
resume the edge is asked again: still refused means paused again. (As with any interrupt, the
source node re-runs on resume.)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from langgraph.graph import END
from langgraph.types import Command, Send, interrupt

from firebreak_shim.feed import AgentNames, FeedClient


def _targets(goto: Any) -> list[str]:
    items = goto if isinstance(goto, (list, tuple)) else [goto]
    names = [i.node if isinstance(i, Send) else i for i in items]
    return [n for n in names if isinstance(n, str) and n != END]


def hold_unless_allowed(client: FeedClient, source: str, target: str) -> None:
    """Returns when ``source -> target`` (agent keys) is allowed; pauses the thread otherwise."""
    while (reason := client.edge_refusal(source, target)) is not None:
        client.report(source, target)
        interrupt({"firebreak": "delegation refused", "from": source, "to": target, "reason": reason})


def _hold_all(client: FeedClient, names: AgentNames, source: str, goto: Any) -> None:
    for target in _targets(goto):
        hold_unless_allowed(client, names.key(source), names.key(target))


def guard_route(
    client: FeedClient, source: str, route: Callable[..., Any], agents: Mapping[str, str] | None = None
) -> Callable[..., Any]:
    """Wraps the conditional-edge function of node ``source`` (sync or async)."""
    names = AgentNames(agents)
    if inspect.iscoroutinefunction(route):

        @functools.wraps(route)
        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            goto = await route(*args, **kwargs)
            _hold_all(client, names, source, goto)
            return goto

        return guarded_async

    @functools.wraps(route)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        goto = route(*args, **kwargs)
        _hold_all(client, names, source, goto)
        return goto

    return guarded


def guard_node(
    client: FeedClient, source: str, node: Callable[..., Any], agents: Mapping[str, str] | None = None
) -> Callable[..., Any]:
    """Wraps node ``source`` whose result may be a ``Command(goto=...)`` handoff."""
    names = AgentNames(agents)

    def check(result: Any) -> Any:
        if isinstance(result, Command) and result.goto:
            _hold_all(client, names, source, result.goto)
        return result

    if inspect.iscoroutinefunction(node):

        @functools.wraps(node)
        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            return check(await node(*args, **kwargs))

        return guarded_async

    @functools.wraps(node)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return check(node(*args, **kwargs))

    return guarded
