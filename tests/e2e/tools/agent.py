"""An agent driven by the tests: the official Python MCP client behind a line protocol.

argv: URL TOKEN MODE  (MODE: '2026-07-28', or 'legacy' for the 2025-11-25 handshake)
stdin, one JSON per line: {"op": "list"} | {"op": "call", "tool": T, "args": {...}}
  | {"op": "listen"} (opens a 2026-07-28 subscriptions/listen stream for toolsListChanged)
  | {"op": "events"} (how many tools-list-changed events that stream delivered)
  | {"op": "version"} (the protocol version the connection settled on)
stdout, one JSON per line: {"tools": [...]} | {"isError": bool, "text": "..."}
  | {"listening": true} | {"events": N} | {"version": "..."} | {"error": "..."}
The session stays open between commands, so the client keeps its cached tools/list.
"""

import json
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(url, token, mode):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    events = []

    async def listen(acknowledged):
        async with client.listen(tools_list_changed=True) as subscription:
            acknowledged.set()
            async for event in subscription:
                events.append(type(event).__name__)

    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        async with anyio.create_task_group() as tasks:
            reply({"ready": True})
            stdin = anyio.wrap_file(sys.stdin)
            async for line in stdin:
                try:
                    cmd = json.loads(line)
                    if cmd["op"] == "list":
                        result = await client.list_tools()
                        reply({"tools": sorted(t.name for t in result.tools)})
                    elif cmd["op"] == "call":
                        result = await client.call_tool(cmd["tool"], cmd.get("args", {}))
                        text = " ".join(getattr(c, "text", "") for c in result.content)
                        reply({"isError": bool(result.is_error), "text": text})
                    elif cmd["op"] == "listen":
                        acknowledged = anyio.Event()
                        tasks.start_soon(listen, acknowledged)
                        with anyio.fail_after(10):
                            await acknowledged.wait()
                        reply({"listening": True})
                    elif cmd["op"] == "events":
                        reply({"events": len(events)})
                    elif cmd["op"] == "version":
                        reply({"version": client.protocol_version})
                    else:
                        reply({"error": f"unknown op {cmd['op']}"})
                except Exception as e:  # the test reads the error, the agent stays up
                    reply({"error": f"{type(e).__name__}: {e}"})
            tasks.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
