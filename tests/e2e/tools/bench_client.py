"""Benchmark client: the official Python MCP client calling one tool directly and through the
gateway, interleaved in one process so both see the same machine state.

argv: DIRECT_URL GATEWAY_URL TOKEN N
stdout: {"direct": [seconds...], "gateway": [seconds...]}
"""

import json
import sys
import time

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(direct_url, gateway_url, token, n):
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as h1, \
            httpx2.AsyncClient(headers=headers, timeout=30) as h2, \
            Client(streamable_http_client(direct_url, http_client=h1), mode="2026-07-28") as direct, \
            Client(streamable_http_client(gateway_url, http_client=h2), mode="2026-07-28") as gateway:
        samples = {"direct": [], "gateway": []}
        for i in range(n + n // 10):
            for name, client in (("direct", direct), ("gateway", gateway)):
                start = time.perf_counter()
                result = await client.call_tool("echo", {"text": "bench"})
                elapsed = time.perf_counter() - start
                if result.is_error:
                    raise SystemExit(f"{name} call failed: {result}")
                if i >= n // 10:  # the first tenth warms up both paths
                    samples[name].append(elapsed)
        print(json.dumps(samples), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
