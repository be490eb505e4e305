"""AutoGen AgentChat: ``GraphFlow`` edge conditions and ``SelectorGroupChat`` ``candidate_func``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage

from firebreak_shim.feed import AgentNames, EdgeRefused, FeedClient

Thread = Sequence[BaseAgentEvent | BaseChatMessage]


def edge_condition(
    client: FeedClient,
    source: str,
    target: str,
    condition: Callable[[BaseChatMessage], bool] | None = None,
    agents: Mapping[str, str] | None = None,
) -> Callable[[BaseChatMessage], bool]:
    """A ``DiGraphBuilder.add_edge(..., condition=)`` that is false while Firebreak refuses the
    edge, and otherwise defers to ``condition`` (if any)."""
    names = AgentNames(agents)

    def allowed(message: BaseChatMessage) -> bool:
        if client.edge_refusal(names.key(source), names.key(target)) is not None:
            client.report(names.key(source), names.key(target))
            return False
        return condition(message) if condition is not None else True

    return allowed


def candidate_func(
    client: FeedClient,
    participants: Sequence[str],
    candidates: Callable[[Thread], list[str]] | None = None,
    agents: Mapping[str, str] | None = None,
) -> Callable[[Thread], list[str]]:
    """A ``SelectorGroupChat(candidate_func=)`` keeping only the speakers the previous speaker
    may hand over to. ``candidates`` (default: every other participant) is filtered."""
    names = AgentNames(agents)

    def allowed(thread: Thread) -> list[str]:
        speaker = next(
            (m.source for m in reversed(thread) if isinstance(m, BaseChatMessage) and m.source in participants),
            None,
        )
        base = candidates(thread) if candidates else [p for p in participants if p != speaker]
        if speaker is None:
            return base
        kept = [c for c in base if client.edge_refusal(names.key(speaker), names.key(c)) is None]
        if not kept:
            for c in base:
                client.report(names.key(speaker), names.key(c))
            refused = ", ".join(base)
            raise EdgeRefused(speaker, refused, "every candidate speaker is refused by Firebreak")
        return kept

    return allowed
