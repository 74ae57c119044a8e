"""Transient API errors are retried; the rest are not. Exercised through the real kubernetes
client against a real (stdlib) HTTP server that misbehaves on purpose."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from stemgen_api import contract as c
from stemgen_client.client import StemGenClient
from stemgen_client.errors import NotFound, TransientAPIError
from stemgen_client.retry import RetryPolicy, call_with_retries, delays, is_transient

FAST = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05)


class FlakyServer:
    """Answers a scripted list of status codes for GETs, then a real-looking StemGeneration."""

    def __init__(self, script: list[int]):
        self.script = list(script)
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                code = outer.script.pop(0) if outer.script else 200
                if code == 200:
                    body = {"apiVersion": c.API_VERSION, "kind": c.KIND,
                            "metadata": {"name": "x", "namespace": "music"}, "spec": {"stems": ["drums"]}}
                else:
                    body = {"kind": "Status", "code": code, "message": f"scripted {code}"}
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                if code == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def flaky() -> Iterator[Callable[[list[int]], tuple[FlakyServer, StemGenClient]]]:
    servers: list[FlakyServer] = []

    def make(script: list[int]) -> tuple[FlakyServer, StemGenClient]:
        server = FlakyServer(script)
        server.thread.start()
        servers.append(server)
        configuration = k8s.Configuration(host=server.url)
        return server, StemGenClient(k8s.ApiClient(configuration), namespace="music", retry_policy=FAST)

    yield make
    for server in servers:
        server.server.shutdown()
        server.server.server_close()


def test_get_retries_429_and_5xx_then_succeeds(flaky) -> None:
    server, client = flaky([429, 503, 500])
    resource = client.get("x")
    assert resource.name == "x" and resource.stems == ["drums"]
    assert len(server.requests) == 4
    assert server.requests[-1].endswith(f"/apis/{c.GROUP}/{c.VERSION}/namespaces/music/{c.PLURAL}/x")


def test_gives_up_after_the_policy_attempts(flaky) -> None:
    server, client = flaky([503] * 10)
    with pytest.raises(TransientAPIError, match="4 attempts: HTTP 503 Service Unavailable: scripted 503"):
        client.get("x")
    assert len(server.requests) == FAST.attempts


def test_not_found_is_not_retried(flaky) -> None:
    server, client = flaky([404])
    with pytest.raises(NotFound, match="music/x"):
        client.get("x")
    assert len(server.requests) == 1


def test_forbidden_is_not_retried(flaky) -> None:
    server, client = flaky([403])
    with pytest.raises(ApiException) as raised:
        client.get("x")
    assert raised.value.status == 403 and len(server.requests) == 1


def test_connection_refused_is_transient() -> None:
    configuration = k8s.Configuration(host="http://127.0.0.1:9")  # discard port: nothing listens
    configuration.retries = 0
    client = StemGenClient(k8s.ApiClient(configuration), namespace="music", retry_policy=FAST)
    with pytest.raises(TransientAPIError, match="giving up"):
        client.get("x")


def test_retry_after_header_is_honoured() -> None:
    waits: list[float] = []
    calls = iter([ApiException(status=429, reason="slow down"), None])

    def flaky_call() -> str:
        error = next(calls)
        if error is not None:
            error.headers = {"Retry-After": "3"}
            raise error
        return "ok"

    assert call_with_retries(flaky_call, "test", RetryPolicy(attempts=3, max_delay=10), sleep=waits.append) == "ok"
    assert waits == [3.0]


def test_backoff_doubles_up_to_the_cap() -> None:
    assert delays(RetryPolicy(attempts=6, initial_delay=0.5, max_delay=3)) == [0.5, 1.0, 2.0, 3, 3]
    assert delays(RetryPolicy(attempts=1)) == []


def test_transient_classification() -> None:
    assert is_transient(ApiException(status=503))
    assert is_transient(ApiException(status=0))
    assert is_transient(ConnectionResetError())
    assert not is_transient(ApiException(status=409))
    assert not is_transient(ValueError("bad"))
