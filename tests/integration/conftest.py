"""Runner fixtures: the tiny MusicGen checkpoint, runner settings wired to the real harness,
and a callback receiver that looks at the resource's status the moment a callback arrives."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from stemgen_api import contract as c
from stemgen_api.webhooks import verify

TINY_MODEL = "stemgen/tiny"
"""spec.model of the tiny checkpoint, found under the model cache (STEMGEN_MODEL_CACHE)."""
TINY_MODEL_EXTENDING = "stemgen/tiny-10hz-window18"
"""An 18.5 s window at 10 frames/s: a 19 s request exercises audiocraft's extension cheaply
(MusicGen itself refuses windows of 18 s or less: its default extend stride is 18 s)."""
EXTENDING_WINDOW_SECONDS = 18.5
CALLBACK_SECRET = "whsec_" + "c3RlbWdlbi10ZXN0LXNlY3JldC0xMjM0NTY3ODkw"


@pytest.fixture(scope="session")
def tiny_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache directory holding tiny checkpoints in audiocraft's format (written once per session)."""
    from stemgen_dev.tiny_model import ensure_checkpoint

    cache = tmp_path_factory.mktemp("model-cache")
    ensure_checkpoint(cache / TINY_MODEL)
    ensure_checkpoint(cache / TINY_MODEL_EXTENDING, "tiny-10hz", segment_duration=EXTENDING_WINDOW_SECONDS)
    return cache


@pytest.fixture
def custom_objects(api_client) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def create_request(custom_objects, namespace) -> Callable[..., dict[str, Any]]:
    """Create a StemGeneration in the test namespace through the real API server."""

    def create(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name}, "spec": spec}
        return custom_objects.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, body)

    return create


@pytest.fixture
def read_request(custom_objects, namespace) -> Callable[[str], dict[str, Any]]:
    return lambda name: custom_objects.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, name)


@pytest.fixture
def runner_settings(namespace, azurite, tiny_model_cache):
    """RunnerSettings pointing at the harness, with short retry budgets so fault tests take seconds."""
    from stemgen_runner.settings import RunnerSettings

    def make(name: str, **overrides: Any) -> RunnerSettings:
        values: dict[str, Any] = {
            "namespace": namespace, "name": name, "storage_connection_string": azurite.connection_string,
            "storage_retry_total": 1, "storage_initial_backoff": 0.2, "storage_timeout": 5.0,
            "model_cache": str(tiny_model_cache), "callback_secret": CALLBACK_SECRET,
            "callback_allow_private": True, "callback_initial_delay": 0.2, "callback_max_delay": 1.0,
            "callback_max_total_seconds": 15.0, "callback_timeout": 2.0, "progress_interval": 0.2,
            "log_format": "text", "cpu_threads": 1,
        }
        values.update(overrides)
        return RunnerSettings(**values)

    return make


@pytest.fixture
def runner_env(namespace, azurite, tiny_model_cache, kubeconfig) -> Callable[..., dict[str, str]]:
    """The environment the operator would give the runner container, for subprocess runs."""
    import os

    def make(name: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STEMGEN_", "AZURE_", "HF_"))}
        env.update({
            c.ENV_NAMESPACE: namespace, c.ENV_NAME: name, "KUBECONFIG": kubeconfig,
            c.ENV_STORAGE_CONNECTION_STRING: azurite.connection_string, c.ENV_MODEL_CACHE: str(tiny_model_cache),
            c.ENV_CALLBACK_SECRET: CALLBACK_SECRET, "STEMGEN_CALLBACK_ALLOW_PRIVATE": "true",
            "STEMGEN_STORAGE_RETRY_TOTAL": "1", "STEMGEN_STORAGE_INITIAL_BACKOFF": "0.2",
            "STEMGEN_CALLBACK_INITIAL_DELAY": "0.2", "STEMGEN_CALLBACK_MAX_TOTAL_SECONDS": "15",
            # Tests share a small, busy machine: one torch thread is ~10x faster than an oversubscribed pool.
            "STEMGEN_CPU_THREADS": "1",
        })
        env.update(extra)
        return env

    return make


@dataclass(frozen=True)
class ProbedCallback:
    """A callback and the resource's status as the API server served it when the callback arrived."""

    payload: dict[str, Any]
    headers: dict[str, str]
    verified: bool
    status_at_arrival: dict[str, Any]


class StatusProbingReceiver:
    """A real HTTP receiver that, before answering, reads the StemGeneration from the API server.

    This is how a receiver that reacts to the callback would behave, and it proves the order the
    contract promises: whatever the callback says must already be in status.
    """

    def __init__(self, custom_objects: client.CustomObjectsApi, namespace: str, secret: str):
        self.received: list[ProbedCallback] = []
        self.arrived = threading.Event()
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload = json.loads(body)
                resource = custom_objects.get_namespaced_custom_object(
                    c.GROUP, c.VERSION, namespace, c.PLURAL, payload["data"]["name"])
                probe.received.append(ProbedCallback(payload, headers, verify(secret, headers, body),
                                                     resource.get("status") or {}))
                self.send_response(204)
                self.end_headers()
                probe.arrived.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def status_probing_receiver(custom_objects, namespace) -> Iterator[StatusProbingReceiver]:
    receiver = StatusProbingReceiver(custom_objects, namespace, CALLBACK_SECRET)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
