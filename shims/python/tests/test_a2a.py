"""A2A: callee B (and C) served by a2a-sdk on loopback behind the callee-side middleware;
A calls them with the a2a-sdk client."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.server.agent_execution import AgentExecutor
from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Role, SendMessageRequest
from starlette.applications import Starlette
from starlette.middleware import Middleware

from firebreak_shim.a2a import FirebreakA2AMiddleware


class Reply(AgentExecutor):
    def __init__(self, name):
        self.name = name

    async def execute(self, context, event_queue):
        await event_queue.enqueue_event(new_text_message(f"{self.name} did it", role=Role.ROLE_AGENT))

    async def cancel(self, context, event_queue):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def callees(client, keys):
    servers = {}
    for name in ("B", "C"):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        card = AgentCard(
            name=name, description=f"agent {name}", version="1",
            supported_interfaces=[AgentInterface(url=f"{url}/rpc", protocol_binding="JSONRPC", protocol_version="1.0")],
            capabilities=AgentCapabilities(), default_input_modes=["text"], default_output_modes=["text"],
            skills=[AgentSkill(id="work", name="work", description="does work", tags=["work"])],
        )
        handler = DefaultRequestHandlerV2(agent_executor=Reply(name), task_store=InMemoryTaskStore(), agent_card=card)
        app = Starlette(
            routes=create_agent_card_routes(card) + create_jsonrpc_routes(handler, "/rpc"),
            middleware=[Middleware(FirebreakA2AMiddleware, client=client, agent=keys[name], agents=keys)],
        )
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, f"A2A agent {name} did not start"
            time.sleep(0.01)
        servers[name] = (url, server)
    yield {name: url for name, (url, _) in servers.items()}
    for _, server in servers.values():
        server.should_exit = True


async def call(url, caller):
    http = httpx.AsyncClient(headers={"X-Firebreak-Caller": caller})
    try:
        a2a = await create_client(url, client_config=ClientConfig(httpx_client=http))
        request = SendMessageRequest(message=new_text_message("please", role=Role.ROLE_USER))
        async for event in a2a.send_message(request):
            return get_message_text(event.message)
    finally:
        await http.aclose()


def test_callee_refuses_the_severed_caller_and_rollback_allows_it_again(control, callees):
    assert asyncio.run(call(callees["B"], "A")) == "B did it"
    incident = control.sever("B")
    with pytest.raises(Exception, match="403"):
        asyncio.run(call(callees["B"], "A"))
    # The refusal says why, as a JSON-RPC error.
    raw = httpx.post(
        f"{callees['B']}/rpc", headers={"X-Firebreak-Caller": "A"},
        json={"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": {}},
    )
    assert raw.status_code == 403
    assert raw.json()["id"] == 7 and "severed" in raw.json()["error"]["message"]
    assert asyncio.run(call(callees["C"], "A")) == "C did it", "A -> C keeps working"
    control.rollback(incident, "B")
    assert asyncio.run(call(callees["B"], "A")) == "B did it"
