"""AutoGen AgentChat: GraphFlow A -> {B, C} with guarded edge conditions, and a
SelectorGroupChat whose candidate_func drops refused speakers. Agents are scripted."""

from __future__ import annotations

import asyncio

import pytest
from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import TextMessage
from autogen_agentchat.teams import DiGraphBuilder, GraphFlow, SelectorGroupChat
from autogen_ext.models.replay import ReplayChatCompletionClient

from firebreak_shim.autogen import candidate_func, edge_condition


class Scripted(BaseChatAgent):
    def __init__(self, name: str):
        super().__init__(name, description=f"scripted {name}")

    @property
    def produced_message_types(self):
        return (TextMessage,)

    async def on_messages(self, messages, cancellation_token):
        return Response(chat_message=TextMessage(content=f"{self.name} done", source=self.name))

    async def on_reset(self, cancellation_token):
        pass


def speakers(result):
    return [m.source for m in result.messages if m.source != "user"]


def graph_run(client, keys, target):
    a, b, c = Scripted("A"), Scripted("B"), Scripted("C")
    builder = DiGraphBuilder()
    builder.add_node(a).add_node(b).add_node(c)
    for node in (b, c):
        wanted = node.name
        builder.add_edge(
            a, node,
            condition=edge_condition(client, "A", wanted, condition=lambda _m, w=wanted: w == target, agents=keys),
        )
    flow = GraphFlow([a, b, c], graph=builder.build())
    return speakers(asyncio.run(flow.run(task="go")))


def selector_run(client, keys, target):
    team = SelectorGroupChat(
        [Scripted("A"), Scripted("B"), Scripted("C")],
        # Never consulted: candidate_func leaves a single candidate each turn.
        model_client=ReplayChatCompletionClient(["A"]),
        candidate_func=candidate_func(
            client, ["A", "B", "C"], candidates=lambda thread: ["A"] if len(thread) == 1 else [target], agents=keys
        ),
        termination_condition=MaxMessageTermination(3),
    )
    return speakers(asyncio.run(team.run(task="go")))


def test_graphflow_edge_condition_follows_the_feed(client, control, keys):
    assert graph_run(client, keys, "B") == ["A", "B"]
    incident = control.sever("B")
    assert graph_run(client, keys, "B") == ["A"], "A -> B must not fire"
    assert graph_run(client, keys, "C") == ["A", "C"]
    control.rollback(incident, "B")
    assert graph_run(client, keys, "B") == ["A", "B"]


def test_selector_candidate_func_follows_the_feed(client, control, keys):
    assert selector_run(client, keys, "B") == ["A", "B"]
    incident = control.sever("B")
    # The team surfaces the shim's EdgeRefused as its own error, with the reason.
    with pytest.raises(Exception, match="EdgeRefused.*every candidate speaker is refused"):
        selector_run(client, keys, "B")
    assert selector_run(client, keys, "C") == ["A", "C"]
    control.rollback(incident, "B")
    assert selector_run(client, keys, "B") == ["A", "B"]
