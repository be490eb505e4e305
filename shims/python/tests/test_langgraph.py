"""LangGraph: A routes to B or C by a conditional edge, or hands off with Command(goto=...)."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from firebreak_shim.langgraph import guard_node, guard_route


class State(TypedDict):
    target: str
    visited: Annotated[list, operator.add]


def worker(name):
    return lambda state: {"visited": [name]}


def routed_graph(client, keys):
    g = StateGraph(State)
    g.add_node("A", worker("A"))
    g.add_node("B", worker("B"))
    g.add_node("C", worker("C"))
    g.add_edge(START, "A")
    g.add_conditional_edges("A", guard_route(client, "A", lambda s: s["target"], keys), ["B", "C"])
    g.add_edge("B", END)
    g.add_edge("C", END)
    return g.compile(checkpointer=InMemorySaver())


def handoff_graph(client, keys):
    def a(state):
        return Command(goto=state["target"], update={"visited": ["A"]})

    g = StateGraph(State)
    g.add_node("A", guard_node(client, "A", a, keys), destinations=("B", "C"))
    g.add_node("B", worker("B"))
    g.add_node("C", worker("C"))
    g.add_edge(START, "A")
    g.add_edge("B", END)
    g.add_edge("C", END)
    return g.compile(checkpointer=InMemorySaver())


def run(graph, thread, target):
    return graph.invoke({"target": target, "visited": []}, {"configurable": {"thread_id": thread}})


def check_sever_pauses_and_rollback_resumes(graph, control):
    assert run(graph, "before", "B")["visited"] == ["A", "B"]
    incident = control.sever("B")

    paused = run(graph, "to-b", "B")
    assert "B" not in paused["visited"]
    (pause,) = paused["__interrupt__"]
    assert pause.value["to"] == control.keys["B"] and "severed" in pause.value["reason"]
    config = {"configurable": {"thread_id": "to-b"}}
    # Resuming while still severed pauses again.
    again = graph.invoke(Command(resume="retry"), config)
    assert "__interrupt__" in again and "B" not in again["visited"]
    assert run(graph, "to-c", "C")["visited"] == ["A", "C"], "A -> C keeps working"

    control.rollback(incident, "B")
    resumed = graph.invoke(Command(resume="firebreak rollback"), config)
    assert resumed["visited"] == ["A", "B"] and "__interrupt__" not in resumed


def test_conditional_edge_sever_pauses_thread_and_rollback_resumes(client, control, keys):
    check_sever_pauses_and_rollback_resumes(routed_graph(client, keys), control)


def test_command_handoff_sever_pauses_thread_and_rollback_resumes(client, control, keys):
    check_sever_pauses_and_rollback_resumes(handoff_graph(client, keys), control)
