"""Helpers for client/CLI integration tests: play the operator's and runner's part on status.

The operator and runner are built in parallel; these tests write status through the real status
subresource exactly as they will, so the client is proven against the API server, not a mock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from stemgen_api import contract as c


def patch_status(api_client: client.ApiClient, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    return client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        c.GROUP, c.VERSION, namespace, c.PLURAL, name, {"status": status})


def running(stage: str, percent: int) -> dict[str, Any]:
    return {"phase": c.Phase.RUNNING.value, "progress": {"stage": stage, "percent": percent}}


PROGRESSION: list[dict[str, Any]] = [
    {"phase": c.Phase.QUEUED.value, "progress": {"stage": c.ProgressStage.QUEUED.value, "percent": 0}},
    running(c.ProgressStage.LOADING_MODEL.value, 5),
    running(c.ProgressStage.GENERATING.value, 30),
    running(c.ProgressStage.GENERATING.value, 70),
    running(c.ProgressStage.UPLOADING.value, 90),
]


def succeeded(outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"phase": c.Phase.SUCCEEDED.value, "reason": "Succeeded",
            "progress": {"stage": c.ProgressStage.DONE.value, "percent": 100}, "outputs": outputs or []}


def failed(reason: str = c.FailureReason.GENERATION_ERROR.value, message: str = "CUDA error") -> dict[str, Any]:
    return {"phase": c.Phase.FAILED.value, "reason": reason, "message": message}


def cancelled() -> dict[str, Any]:
    return {"phase": c.Phase.CANCELLED.value, "reason": "Cancelled", "message": "spec.cancel was set"}


class StatusPlayer:
    """Applies status updates from a thread, a pause apart, after an optional trigger."""

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str, updates: list[dict[str, Any]],
                 interval: float = 0.4, start_when: Callable[[], bool] | None = None):
        self.args = (api_client, namespace, name)
        self.updates = updates
        self.interval = interval
        self.start_when = start_when
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + 60
            while self.start_when is not None and not self.start_when():
                if time.monotonic() > deadline:
                    raise TimeoutError("status player trigger never fired")
                time.sleep(0.1)
            for update in self.updates:
                time.sleep(self.interval)
                patch_status(*self.args, update)
        except BaseException as error:  # reported by join()
            self.errors.append(error)

    def __enter__(self) -> StatusPlayer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.join()

    def join(self) -> None:
        self.thread.join(timeout=90)
        assert not self.thread.is_alive(), "status player hung"
        if self.errors:
            raise self.errors[0]
