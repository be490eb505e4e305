"""A FastMCP (mcp 2.x `MCPServer`) upstream for the tools-gateway tests.

Serves streamable HTTP at /mcp on 127.0.0.1:PORT (argv[1]). Every HTTP request that reaches
/mcp is counted, and GET /count returns the count, so tests prove the gateway forwarded
nothing for bad input.
"""

import os
import sys
import threading

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("firebreak-test-upstream")


@server.tool()
def echo(text: str) -> str:
    """Echoes the text back."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def export_payouts(account: str) -> str:
    """The sensitive tool the tests revoke."""
    return f"exported {account}"


inner = server.streamable_http_app()
count = 0


async def app(scope, receive, send):
    global count
    if scope["type"] == "http" and scope["path"] == "/count":
        body = str(count).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] == "http" and scope["path"].startswith("/mcp"):
        count += 1
    await inner(scope, receive, send)


def exit_with_parent():
    # The test binary holds our stdin: when it exits, so do we (no orphaned servers).
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=exit_with_parent, daemon=True).start()
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
