"""CrewAI: a global ``before_tool_call`` hook on the two delegation tools. A refused delegation
returns False, which CrewAI turns into a blocked tool call; the coworker never runs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from crewai.hooks import register_before_tool_call_hook, unregister_before_tool_call_hook
from crewai.hooks.tool_hooks import ToolCallHookContext

from firebreak_shim.feed import AgentNames, FeedClient

log = logging.getLogger("firebreak_shim")

# CrewAI passes the sanitized tool names to hooks; the display names are kept for older releases.
DELEGATION_TOOLS = frozenset(
    {
        "delegate_work_to_coworker",
        "ask_question_to_coworker",
        "Delegate work to coworker",
        "Ask question to coworker",
    }
)


def install(client: FeedClient, agents: Mapping[str, str] | None = None) -> Callable[[], None]:
    """Registers the hook; ``agents`` maps CrewAI roles to agent keys. Returns the uninstaller."""
    names = AgentNames(agents)

    def firebreak_delegation_guard(context: ToolCallHookContext) -> bool | None:
        if context.tool_name not in DELEGATION_TOOLS:
            return None
        role = getattr(context.agent, "role", None)
        coworker = context.tool_input.get("coworker")
        if not role or not isinstance(coworker, str):
            return None
        reason = client.edge_refusal(names.key(role), names.key(coworker))
        if reason is None:
            return None
        log.warning("firebreak refused delegation %s -> %s: %s", role, coworker, reason)
        client.report(names.key(role), names.key(coworker))
        return False

    register_before_tool_call_hook(firebreak_delegation_guard)
    return lambda: unregister_before_tool_call_hook(firebreak_delegation_guard)
