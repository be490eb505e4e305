"""CrewAI: manager A delegates to coworkers B and C through CrewAI's own delegation tool,
driven by a scripted LLM (no model)."""

from __future__ import annotations

import json

import pytest
from crewai import Agent, Crew, Process, Task
from crewai.llms.base_llm import BaseLLM

from firebreak_shim import crewai as shim


class Scripted(BaseLLM):
    """Answers from a script: the ReAct text a model would produce."""

    def __init__(self, replies):
        super().__init__(model="scripted")
        self._replies = list(replies)

    def call(self, messages, *args, **kwargs):
        return self._replies.pop(0) if self._replies else "Thought: done\nFinal Answer: done"

    def supports_function_calling(self):
        return False


def delegate(coworker):
    action = {"task": "summarise the ledger", "context": "ledger 42", "coworker": coworker}
    return f"Thought: delegate\nAction: Delegate work to coworker\nAction Input: {json.dumps(action)}"


def run_crew(target, ran):
    def coworker(role):
        class Tracking(Scripted):
            def call(self, *a, **k):
                ran.append(role)
                return super().call(*a, **k)

        return Agent(role=role, goal="help", backstory="coworker", llm=Tracking([f"Thought: ok\nFinal Answer: {role} did it"]))

    manager = Agent(
        role="A", goal="delegate", backstory="manager", allow_delegation=True,
        llm=Scripted([delegate(target), "Thought: done\nFinal Answer: A finished"]),
    )
    task = Task(description="delegate the ledger", expected_output="a summary", agent=manager)
    Crew(agents=[manager, coworker("B"), coworker("C")], tasks=[task], process=Process.sequential).kickoff()


@pytest.fixture
def guard(client, keys):
    uninstall = shim.install(client, keys)
    yield
    uninstall()


def test_severed_delegation_is_blocked_and_rollback_allows_it_again(guard, control):
    ran = []
    run_crew("B", ran)
    assert ran == ["B"]

    incident = control.sever("B")
    ran.clear()
    run_crew("B", ran)
    assert ran == [], "B ran despite the severed edge"
    run_crew("C", ran)
    assert ran == ["C"], "A -> C keeps working"

    control.rollback(incident, "B")
    ran.clear()
    run_crew("B", ran)
    assert ran == ["B"]
