"""The callback's `data`, built the same way whoever sends it.

The runner sends the callback when it finishes; the operator sends it when the pod died first
or the request was cancelled. A receiver must not be able to tell them apart by shape, so both
build `data` here, every key always present (null or empty when the sender does not know it).
"""

from __future__ import annotations

from typing import Any

from . import contract as c


def callback_data(
    *,
    namespace: str,
    name: str,
    uid: str,
    request_id: str,
    audio_file_id: str | None,
    phase: c.Phase,
    stems: list[str],
    outputs: list[dict[str, Any]],
    reason: str | None = None,
    message: str | None = None,
    seed: int | None = None,
    warnings: list[str] | None = None,
    timings: dict[str, float] | None = None,
    attempts: int | None = None,
    job_name: str | None = None,
) -> dict[str, Any]:
    error = None if phase == c.Phase.SUCCEEDED else {"reason": reason or phase.value, "message": message or ""}
    return {
        "namespace": namespace,
        "name": name,
        "uid": uid,
        "requestId": request_id,
        "audioFileId": audio_file_id,
        "phase": phase.value,
        "reason": reason or phase.value,
        "message": message or "",
        "error": error,
        "stems": list(stems),
        "outputs": list(outputs),
        "seed": seed,
        "warnings": list(warnings or []),
        "timings": dict(timings or {}),
        "attempts": attempts or 0,
        "jobName": job_name,
    }


CALLBACK_DATA_KEYS = tuple(callback_data(namespace="", name="", uid="", request_id="", audio_file_id=None,
                                         phase=c.Phase.SUCCEEDED, stems=[], outputs=[]))
