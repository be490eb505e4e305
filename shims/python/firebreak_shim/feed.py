"""Client of Firebreak's policy feed: one SSE stream per agent, a local cache of each agent's
document, and the edge decision every framework guard asks.

The feed serves ``GET /v1/feed/stream?agent=KEY`` (an event ``policy`` carrying the whole
document, ``id`` = ``EPOCH.VERSION``) and comments every few seconds while idle. Any line counts as
contact. Once an agent's stream has been silent longer than ``staleness`` seconds, edges
involving that agent are refused ("fail closed"): a feed that cannot be reached must not let a
severed edge through.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping

import httpx

log = logging.getLogger("firebreak_shim")


class FeedError(Exception):
    """The feed refused the client (bad token, unknown agent): retrying will not help."""


class EdgeRefused(Exception):
    """A delegation was refused by Firebreak's policy."""

    def __init__(self, source: str, target: str, reason: str):
        super().__init__(f"firebreak refused {source} -> {target}: {reason}")
        self.source, self.target, self.reason = source, target, reason


class AgentNames:
    """Maps framework names (node, role, participant) to Firebreak agent keys
    (``cluster/namespace/Kind/name``). Unmapped names are used as keys as they are."""

    def __init__(self, mapping: Mapping[str, str] | None = None):
        self._exact = dict(mapping or {})
        # CrewAI matches coworker names loosely; so do we.
        self._loose = {k.strip().casefold(): v for k, v in self._exact.items()}

    def key(self, name: str) -> str:
        return self._exact.get(name) or self._loose.get(name.strip().casefold(), name)


class FeedClient:
    """Follows the feed documents of ``agents``; thread-safe; usable from sync and async code.

    ``staleness``: seconds without any contact after which edges fail closed.
    ``reconnect_delay``: pause between reconnection attempts.
    """

    def __init__(
        self,
        url: str,
        token: str,
        agents: Iterable[str],
        *,
        staleness: float = 15.0,
        reconnect_delay: float = 0.2,
    ):
        self.url = url.rstrip("/")
        self.staleness = staleness
        self.reconnect_delay = reconnect_delay
        self._headers = {"Authorization": f"Bearer {token}"}
        self._agents = list(dict.fromkeys(agents))
        self._docs: dict[str, dict] = {}
        self._errors: dict[str, str] = {}
        self._started = time.monotonic()
        self._contact: dict[str, float] = {a: self._started for a in self._agents}
        self._changed = threading.Condition()
        self._listeners: list[Callable[[dict], None]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, wait: float = 5.0) -> "FeedClient":
        """Opens the streams; waits up to ``wait`` seconds for every agent's first document.
        Raises FeedError when the feed refuses an agent (token or key wrong)."""
        for agent in self._agents:
            t = threading.Thread(target=self._follow, args=(agent,), daemon=True, name=f"feed:{agent}")
            t.start()
            self._threads.append(t)
        deadline = time.monotonic() + wait
        with self._changed:
            while not all(a in self._docs or a in self._errors for a in self._agents):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            if self._errors:
                self.close()
                raise FeedError("; ".join(f"{a}: {e}" for a, e in self._errors.items()))
        return self

    def close(self) -> None:
        self._stop.set()

    def __enter__(self) -> "FeedClient":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def on_change(self, listener: Callable[[dict], None]) -> None:
        """Calls ``listener(document)`` (on the stream's thread) for every new document."""
        self._listeners.append(listener)

    # -- the stream ----------------------------------------------------------------------

    def _follow(self, agent: str) -> None:
        # The read timeout tears down a connection that went silent (keep-alives stopped).
        timeout = httpx.Timeout(5.0, read=max(self.staleness, 1.0))
        with httpx.Client(timeout=timeout, headers=self._headers) as http:
            while not self._stop.is_set():
                try:
                    self._read_stream(http, agent)
                except FeedError as e:
                    with self._changed:
                        self._errors[agent] = str(e)
                        self._changed.notify_all()
                    log.error("firebreak feed refused %s: %s", agent, e)
                    return
                except (httpx.HTTPError, OSError, ValueError) as e:
                    log.debug("firebreak feed stream for %s dropped: %s", agent, e)
                self._stop.wait(self.reconnect_delay)

    def _read_stream(self, http: httpx.Client, agent: str) -> None:
        headers = {"Accept": "text/event-stream"}
        cached = self._docs.get(agent)
        if cached is not None:
            # The feed resends only if the document changed meanwhile, or if it is another
            # feed (a restarted or standby daemon: another epoch).
            headers["Last-Event-ID"] = f"{cached.get('epoch', 0)}.{cached['version']}"
        with http.stream("GET", f"{self.url}/v1/feed/stream", params={"agent": agent}, headers=headers) as resp:
            if resp.status_code in (401, 403, 404):
                resp.read()
                raise FeedError(_error_text(resp))
            resp.raise_for_status()
            data: list[str] = []
            for line in resp.iter_lines():
                if self._stop.is_set():
                    return
                self._contact[agent] = time.monotonic()
                if line == "":
                    if data:
                        self._store(agent, json.loads("\n".join(data)))
                    data = []
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                # `id:`, `event:` and `:` comments carry nothing the document lacks.

    def _store(self, agent: str, doc: dict) -> None:
        with self._changed:
            old = self._docs.get(agent)
            # Within one feed, versions only grow: an older one is a late duplicate. A document
            # from another epoch replaces the cache whatever its version.
            if old is not None and old.get("epoch") == doc.get("epoch") and old["version"] >= doc["version"]:
                return
            self._docs[agent] = doc
            self._changed.notify_all()
        for listener in self._listeners:
            listener(doc)

    # -- reading -------------------------------------------------------------------------

    def document(self, agent: str) -> dict | None:
        return self._docs.get(agent)

    def silence(self, agent: str) -> float | None:
        """Seconds since the agent's stream was last heard from; None if not followed."""
        contact = self._contact.get(agent)
        return None if contact is None else time.monotonic() - contact

    def wait_for(self, agent: str, predicate: Callable[[dict], bool], timeout: float = 5.0) -> dict:
        """Blocks until the agent's document satisfies ``predicate``; returns it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                doc = self._docs.get(agent)
                if doc is not None and predicate(doc):
                    return doc
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"feed document of {agent} did not change as expected: {doc}")
                self._changed.wait(left)

    def _stale(self, *agents: str) -> str | None:
        for agent in agents:
            silent = self.silence(agent)
            if silent is not None and silent > self.staleness:
                return (
                    f"policy feed unreachable for {silent:.1f}s (staleness {self.staleness}s) "
                    f"for {agent}: failing closed"
                )
        return None

    # -- decisions (the same rules as the feed's Document::refuses_edge) -----------------

    def edge_refusal(self, source: str, target: str) -> str | None:
        """Why ``source -> target`` is refused, or None when it may proceed. Caller side."""
        stale = self._stale(source, target)
        if stale:
            return stale
        caller, callee = self._docs.get(source), self._docs.get(target)
        if caller is not None:
            if caller["paused"]:
                return f"{source} is paused"
            if target in caller["severed"]:
                return f"edge {source} -> {target} is severed"
        if callee is not None:
            if callee["inboundIsolated"]:
                return f"{target} is isolated from every caller"
            if callee["paused"]:
                return f"{target} is paused"
        return None

    def inbound_refusal(self, caller: str | None, callee: str) -> str | None:
        """Why a call from ``caller`` must be refused by ``callee``, or None. Callee side: the
        callee's own document lists the callers whose edge is severed."""
        stale = self._stale(callee)
        if stale:
            return stale
        doc = self._docs.get(callee)
        if doc is not None:
            if doc["inboundIsolated"]:
                return f"{callee} is isolated from every caller"
            if doc["paused"]:
                return f"{callee} is paused"
            if caller is not None and caller in doc["severedFrom"]:
                return f"edge {caller} -> {callee} is severed"
        if caller is None:
            return None
        return self.edge_refusal(caller, callee) if caller in self._contact else None

    def check_edge(self, source: str, target: str) -> None:
        """Raises EdgeRefused when ``source -> target`` is refused."""
        reason = self.edge_refusal(source, target)
        if reason is not None:
            self.report(source, target)
            raise EdgeRefused(source, target, reason)

    def report(self, source: str, target: str) -> None:
        """Tells the feed a delegation ``source -> target`` was refused, so Firebreak journals
        it (``call-refused``) under the incidents whose rules refused it and counts it. In the
        background and best effort: a refusal never waits on the network."""

        def post() -> None:
            try:
                with httpx.Client(headers=self._headers, timeout=5) as http:
                    resp = http.post(f"{self.url}/v1/feed/refusals", json={"from": source, "to": target})
                if resp.status_code != 200:
                    log.debug("firebreak feed did not record a refusal: %s", _error_text(resp))
            except httpx.HTTPError as e:
                log.debug("firebreak feed unreachable to record a refusal: %s", e)

        threading.Thread(target=post, name="firebreak-refusal", daemon=True).start()


def _error_text(resp: httpx.Response) -> str:
    try:
        return f"HTTP {resp.status_code}: {resp.json()['error']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code}: {resp.text[:200]}"
