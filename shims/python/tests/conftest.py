"""Fixtures for the shim tests: a live Firebreak feed and a control route that contains and
rolls back through Firebreak's engine. Both are served by the Rust end-to-end test
(tests/e2e/delegation.rs), which runs this suite."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from firebreak_shim import FeedClient

NEEDED = ("FIREBREAK_FEED_URL", "FIREBREAK_FEED_TOKEN", "FIREBREAK_CONTROL_URL", "FIREBREAK_AGENTS")


def _env() -> dict[str, str]:
    missing = [v for v in NEEDED if not os.environ.get(v)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: these tests run against a live feed served by "
            "`cargo test -p firebreak-delegation --test delegation` (run ./scripts/test, or "
            "eval \"$(./scripts/test --env)\" and then that cargo test)",
            pytrace=False,
        )
    return {v: os.environ[v] for v in NEEDED}


@pytest.fixture(scope="session")
def env() -> dict[str, str]:
    return _env()


@pytest.fixture(scope="session")
def keys(env) -> dict[str, str]:
    a, b, c = env["FIREBREAK_AGENTS"].split(",")
    return {"A": a, "B": b, "C": c}


@pytest.fixture
def client(env, keys):
    with FeedClient(env["FIREBREAK_FEED_URL"], env["FIREBREAK_FEED_TOKEN"], keys.values()) as c:
        yield c


class Control:
    """Contains A -> target through the engine (runbook, auto) and rolls it back."""

    def __init__(self, url: str, client: FeedClient, keys: dict[str, str]):
        self.url, self.client, self.keys = url, client, keys
        self.open: dict[str, str] = {}

    def sever(self, target: str) -> str:
        resp = httpx.post(
            f"{self.url}/contain", json={"alert": f"shim-{uuid.uuid4()}", "to": self.keys[target]}, timeout=10
        )
        assert resp.status_code == 200, f"containment failed: {resp.text}"
        incident = resp.json()["incident"]
        self.open[incident] = target
        self.client.wait_for(self.keys["A"], lambda d: self.keys[target] in d["severed"])
        return incident

    def rollback(self, incident: str, target: str) -> None:
        httpx.post(f"{self.url}/rollback", json={"incident": incident}, timeout=10).raise_for_status()
        self.open.pop(incident, None)
        self.client.wait_for(self.keys["A"], lambda d: self.keys[target] not in d["severed"])


@pytest.fixture
def control(env, client, keys):
    control = Control(env["FIREBREAK_CONTROL_URL"], client, keys)
    yield control
    # A failed test must not leave its containment to the next one.
    for incident, target in list(control.open.items()):
        control.rollback(incident, target)
