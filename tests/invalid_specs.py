"""A table of invalid StemGeneration specs and the field each must be refused on.

Shared by the unit test (Python validator) and the integration test (the real API server), so
both sides of the contract are held to the same cases.
"""

from __future__ import annotations

import copy
from typing import Any

VALID_SPEC: dict[str, Any] = {
    "stems": ["drums", "bass"],
    "prompt": "warm analog groove",
    "style": "funk",
    "bpm": 120,
    "key": "E minor",
    "durationSeconds": 8,
}

_DELETE = object()


def _with(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID_SPEC)
    node = spec
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return spec


# (case id, spec, field the error must name)
INVALID_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("bpm-too-low", _with("bpm", 29), "spec.bpm"),
    ("bpm-too-high", _with("bpm", 301), "spec.bpm"),
    ("bpm-not-a-number", _with("bpm", "fast"), "spec.bpm"),
    ("duration-zero", _with("durationSeconds", 0), "spec.durationSeconds"),
    ("duration-too-long", _with("durationSeconds", 301), "spec.durationSeconds"),
    ("stems-empty", _with("stems", []), "spec.stems"),
    ("stems-missing", _with("stems", _DELETE), "spec.stems"),
    ("stems-duplicate", _with("stems", ["drums", "bass", "drums"]), "spec.stems[2]"),
    ("stems-too-many", _with("stems", [f"s{i}" for i in range(9)]), "spec.stems"),
    ("stem-uppercase", _with("stems", ["Drums"]), "spec.stems[0]"),
    ("stem-too-long", _with("stems", ["d" * 33]), "spec.stems[0]"),
    ("key-unknown-note", _with("key", "H minor"), "spec.key"),
    ("key-unknown-mode", _with("key", "E dorian"), "spec.key"),
    ("key-lowercase", _with("key", "e minor"), "spec.key"),
    ("device-unknown", _with("device", "tpu"), "spec.device"),
    ("callback-ftp-url", _with("callback", {"url": "ftp://example.com/hook"}), "spec.callback.url"),
    ("callback-not-a-url", _with("callback", {"url": "not a url"}), "spec.callback.url"),
    ("callback-missing-url", _with("callback", {"secretRef": {"name": "hook"}}), "spec.callback.url"),
    ("callback-secret-without-name", _with("callback", {"url": "https://example.com/h", "secretRef": {"key": "k"}}),
     "spec.callback.secretRef.name"),
    ("prompt-too-long", _with("prompt", "x" * 1001), "spec.prompt"),
    ("style-too-long", _with("style", "x" * 201), "spec.style"),
    ("seed-negative", _with("generation.seed", -1), "spec.generation.seed"),
    ("temperature-zero", _with("generation.temperature", 0), "spec.generation.temperature"),
    ("top-k-negative", _with("generation.topK", -1), "spec.generation.topK"),
    ("top-p-above-one", _with("generation.topP", 1.5), "spec.generation.topP"),
    ("cfg-too-high", _with("generation.cfgCoef", 21), "spec.generation.cfgCoef"),
    ("format-mp3", _with("output.format", "mp3"), "spec.output.format"),
    ("container-uppercase", _with("output.container", "Bad_Name"), "spec.output.container"),
    ("container-double-hyphen", _with("output.container", "ab--cd"), "spec.output.container"),
    ("prefix-leading-slash", _with("output.prefix", "/stems"), "spec.output.prefix"),
    ("retries-too-many", _with("retries", 11), "spec.retries"),
    ("timeout-too-short", _with("timeoutSeconds", 5), "spec.timeoutSeconds"),
    ("ttl-negative", _with("ttlSecondsAfterFinished", -1), "spec.ttlSecondsAfterFinished"),
    ("queue-name-spaces", _with("queueName", "Bad Queue"), "spec.queueName"),
    ("request-id-spaces", _with("requestId", "has space"), "spec.requestId"),
    ("model-path-spaces", _with("model", "../my model"), "spec.model"),
    ("priority-too-high", _with("priority", 5000), "spec.priority"),
    ("cancel-not-bool", _with("cancel", "yes"), "spec.cancel"),
]
