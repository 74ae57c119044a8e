"""Run the real operator in-process, in a thread, for tests and demos.

It is the same kopf runner with the same handlers as `stemgen-operator`; only the settings come
in ready-made instead of from the environment, and stopping is a flag instead of a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import kopf

from . import handlers
from .settings import OperatorSettings


class OperatorThread:
    """`with OperatorThread(settings):` runs the operator until the block ends."""

    def __init__(self, settings: OperatorSettings, startup_timeout: float = 60.0):
        if not settings.namespaces:
            raise ValueError("an in-process operator must be namespaced (settings.namespaces)")
        self.settings = settings
        self.startup_timeout = startup_timeout
        self.memo = kopf.Memo(**{handlers.SETTINGS_KEY: settings})
        self._stop: asyncio.Future[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="stemgen-operator", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._operate())
        except BaseException as error:  # surfaced to the test thread by start()/stop()
            self._error = error
            self._ready.set()

    async def _operate(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        ready = self._loop.create_future()
        ready.add_done_callback(lambda _: self._ready.set())
        await kopf.operator(
            registry=kopf.get_default_registry(),
            namespaces=self.settings.namespaces,
            standalone=True,
            memo=self.memo,
            stop_flag=self._stop,
            ready_flag=ready,
        )

    @property
    def runtime(self) -> Any:
        return self.memo.get("stemgen_runtime")

    def start(self) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(self.startup_timeout):
            raise TimeoutError("the operator did not become ready")
        if self._error:
            raise RuntimeError("the operator failed to start") from self._error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop and self._stop and not self._stop.done():
            self._loop.call_soon_threadsafe(lambda: self._stop.done() or self._stop.set_result(None))
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the operator did not stop")

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_operator(settings: OperatorSettings) -> Iterator[OperatorThread]:
    with OperatorThread(settings) as operator:
        yield operator


def request_manifest(name: str, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    """A StemGeneration to create (tests, the benchmark); `spec` overrides the minimal one."""
    from stemgen_api import contract as c

    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": metadata,
            "spec": {"stems": ["drums", "bass"], **spec}}


def request_body(name: str = "song", namespace: str = "music", uid: str = "uid-1", generation: int = 1,
                 status: dict[str, Any] | None = None, created: str = "2026-01-01T00:00:00Z",
                 **spec: Any) -> dict[str, Any]:
    """A StemGeneration as the API server returns it, for pure unit tests."""
    body = request_manifest(name, namespace, **spec)
    body["metadata"].update({"uid": uid, "generation": generation, "resourceVersion": "1",
                             "creationTimestamp": created})
    if status is not None:
        body["status"] = status
    return body
