"""The feed client itself: refused credentials, unknown agents, and failing closed once the
feed has been unreachable longer than the staleness."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from firebreak_shim import FeedClient, FeedError


def test_wrong_token_is_a_clear_error(env, keys):
    with pytest.raises(FeedError, match="401.*bearer token"):
        FeedClient(env["FIREBREAK_FEED_URL"], "not-a-feed-token-000", [keys["A"]]).start()


def test_unknown_agent_is_named(env):
    ghost = "prod/agents/Deployment/ghost"
    with pytest.raises(FeedError, match=f"404.*unknown agent {ghost}"):
        FeedClient(env["FIREBREAK_FEED_URL"], env["FIREBREAK_FEED_TOKEN"], [ghost]).start()


class Relay:
    """A TCP relay to the feed that the test can cut, as a network partition would."""

    def __init__(self, target: str):
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                inbound, _ = self.listener.accept()
            except OSError:
                return
            outbound = socket.create_connection(self.target)
            self.conns += [inbound, outbound]
            for src, dst in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.listener.close()
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_severed_edges_fail_closed_once_the_feed_is_unreachable_past_staleness(env, keys):
    relay = Relay(env["FIREBREAK_FEED_URL"])
    a, c = keys["A"], keys["C"]
    with FeedClient(relay.url, env["FIREBREAK_FEED_TOKEN"], [a, c], staleness=1.0, reconnect_delay=0.05) as client:
        assert client.edge_refusal(a, c) is None
        relay.cut()
        # Within the staleness the cached policy still decides.
        assert client.edge_refusal(a, c) is None
        time.sleep(1.3)
        reason = client.edge_refusal(a, c)
        assert reason is not None and "unreachable" in reason and "failing closed" in reason


def test_a_document_from_another_epoch_replaces_the_cache_whatever_its_version(env, keys):
    """A restarted (or standby) daemon's feed is another epoch: the shim takes its document even
    if the old daemon's version was higher, and ignores late duplicates within one epoch."""
    client = FeedClient(env["FIREBREAK_FEED_URL"], env["FIREBREAK_FEED_TOKEN"], [keys["A"]])
    agent = keys["A"]
    old = {"agent": agent, "epoch": 2, "version": 900, "severed": [keys["B"]], "severedFrom": [],
           "inboundIsolated": False, "paused": False, "revokedTools": [], "blockedDestinations": []}
    client._store(agent, old)
    client._store(agent, {**old, "version": 899, "severed": []})
    assert client.document(agent)["severed"] == [keys["B"]], "a late duplicate is ignored"
    client._store(agent, {**old, "epoch": 1, "version": 5, "severed": []})
    assert client.document(agent)["severed"] == [], "another epoch resyncs"
