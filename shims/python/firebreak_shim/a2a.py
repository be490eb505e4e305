"""A2A: callee-side ASGI middleware refusing callers whose edge into this agent is cut.

Wrap the callee's Starlette app (``Starlette(..., middleware=[Middleware(FirebreakA2AMiddleware,
client=..., agent=...)])``). The agent card stays public; every other request is checked. The
caller is read from a header (``X-Firebreak-Caller`` by default, an agent key or a name mapped
by ``agents``), or by ``caller_of(scope)`` for deployments that authenticate callers otherwise.
A refusal is HTTP 403 with a JSON-RPC error body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from firebreak_shim.feed import AgentNames, FeedClient

CALLER_HEADER = "x-firebreak-caller"
# JSON-RPC server-error range: "refused by policy".
REFUSED = -32003


class FirebreakA2AMiddleware:
    def __init__(
        self,
        app: Any,
        client: FeedClient,
        agent: str,
        agents: Mapping[str, str] | None = None,
        caller_of: Callable[[dict], str | None] | None = None,
    ):
        self.app, self.client, self.agent = app, client, agent
        self.names = AgentNames(agents)
        self.caller_of = caller_of or _header_caller

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] == "GET":
            await self.app(scope, receive, send)
            return
        caller = self.caller_of(scope)
        reason = self.client.inbound_refusal(self.names.key(caller) if caller else None, self.agent)
        if reason is None:
            await self.app(scope, receive, send)
            return
        if caller:
            self.client.report(self.names.key(caller), self.agent)
        body = await _read_body(receive)
        try:
            request_id = json.loads(body).get("id")
        except (ValueError, AttributeError):
            request_id = None
        payload = json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "error": {"code": REFUSED, "message": f"firebreak: {reason}"}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _header_caller(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name.decode("latin-1").lower() == CALLER_HEADER:
            return value.decode("utf-8", "replace").strip() or None
    return None


async def _read_body(receive: Callable) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
