"""Pure builders: keyword arguments or a spec object → a validated StemGeneration manifest.

Python callers write `duration_seconds=20`; the resource says `durationSeconds`. Keys are
converted mechanically (snake_case → camelCase), so a new contract field works as a keyword at
once, and an unknown keyword is reported by the contract's own validation, naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stemgen_api import contract as c
from stemgen_api.validation import FieldError, SpecError, validate_spec, with_defaults

NAME_PREFIX = "sg-"
NAME_SLUG_MAX = 40
"""Names derived from a request id stay ≤ 52 characters, so the operator can derive Job and pod
names and `LABEL_NAME` values (≤ 63) from them without truncating."""
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def camel(key: str) -> str:
    """`duration_seconds` → `durationSeconds`; keys already in camelCase are left alone."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camelize(value: Any) -> Any:
    """Recursively camelCase the keys of mappings (and dataclasses), dropping `None` values.

    `None` means "not set, let the API server default it", which keeps the stored spec small
    and lets the CRD's defaults stay the single source of default values.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {camel(str(k)): camelize(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [camelize(v) for v in value]
    return value


@dataclass
class GenerationParams:
    seed: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    cfg_coef: float | None = None


@dataclass
class OutputSpec:
    container: str | None = None
    prefix: str | None = None
    format: str | None = None


@dataclass
class SecretRef:
    name: str
    key: str | None = None


@dataclass
class CallbackSpec:
    url: str
    secret_ref: SecretRef | None = None


@dataclass
class StemGenerationSpec:
    """The spec as a typed object; `None` fields are left to the CRD's defaults.

    A test checks every field here maps onto a property of the contract's `spec_schema()`.
    """

    stems: list[str] = field(default_factory=list)
    request_id: str | None = None
    audio_file_id: str | None = None
    prompt: str | None = None
    style: str | None = None
    bpm: int | None = None
    key: str | None = None
    duration_seconds: float | None = None
    model: str | None = None
    device: str | None = None
    priority: int | None = None
    generation: GenerationParams | None = None
    output: OutputSpec | None = None
    callback: CallbackSpec | None = None
    timeout_seconds: int | None = None
    retries: int | None = None
    ttl_seconds_after_finished: int | None = None
    queue_name: str | None = None
    cancel: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return camelize(self)


SpecLike = StemGenerationSpec | Mapping[str, Any]


def build_spec(spec: SpecLike | None = None, **fields: Any) -> dict[str, Any]:
    """Merge a spec object/dict with keyword fields (keywords win) and validate the result.

    Raises `SpecError` naming every offending field (`spec.bpm: must be <= 300`). Defaults are
    *not* filled in: the API server does that, and a stored spec then shows what the caller asked.
    """
    base = camelize(spec) if spec is not None else {}
    if not isinstance(base, dict):
        raise SpecError([FieldError("spec", "must be a mapping or StemGenerationSpec")])
    merged = {**base, **camelize(fields)}
    if isinstance(merged.get("stems"), str):
        merged["stems"] = [s.strip() for s in merged["stems"].split(",") if s.strip()]
    errors = validate_spec(merged)
    if errors:
        raise SpecError(errors)
    return merged


def name_for_request(request_id: str) -> str:
    """A deterministic, DNS-safe resource name for a request id.

    The same request id always gives the same name, so a retried create collides with the
    first one (HTTP 409) instead of making a second request. The hash is of the exact id, so
    ids differing only in case or punctuation still get different names.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request_id.lower()).strip("-")[:NAME_SLUG_MAX].strip("-")
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:8]
    return f"{NAME_PREFIX}{slug}-{digest}" if slug else f"{NAME_PREFIX}{digest}"


def check_name(name: str) -> None:
    if len(name) > 253 or not NAME_PATTERN.match(name):
        raise SpecError([FieldError("metadata.name", "must be a DNS-1123 name: lowercase letters, digits and "
                                                     "'-', starting and ending with a letter or digit")])


def build_manifest(spec: dict[str, Any], namespace: str, name: str | None = None,
                   labels: Mapping[str, str] | None = None,
                   annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The object to POST. The name comes from, in order: `name`, `spec.requestId`, or the
    API server's `generateName` (then the request id defaults to that generated name)."""
    metadata: dict[str, Any] = {"namespace": namespace, "labels": {c.LABEL_PART_OF: c.PART_OF, **(labels or {})}}
    request_id = spec.get("requestId")
    if request_id:
        metadata["labels"][c.LABEL_REQUEST_ID] = c.request_id_label_value(request_id)
    if name:
        check_name(name)
        metadata["name"] = name
    elif request_id:
        metadata["name"] = name_for_request(request_id)
    else:
        metadata["generateName"] = NAME_PREFIX
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": metadata, "spec": spec}


IGNORED_ON_RETRY = frozenset({"cancel"})
"""A retried create may find its request already cancelled; that is the same request."""


def spec_differences(requested: Mapping[str, Any], stored: Mapping[str, Any], path: str = "spec") -> list[str]:
    """Fields where a stored spec differs from what a retried create asks for.

    The request is compared with the API server's defaults filled in (the stored copy has them),
    so leaving a field out and asking for its default are the same request.
    """
    if path == "spec":
        requested = with_defaults(dict(requested))
    differences = []
    for key in sorted(set(requested) | set(stored)):
        if path == "spec" and key in IGNORED_ON_RETRY:
            continue
        mine, theirs = requested.get(key), stored.get(key)
        if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
            differences.extend(spec_differences(mine, theirs, f"{path}.{key}"))
        elif mine != theirs:
            differences.append(f"{path}.{key}")
    return differences


def split_manifest(document: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, spec) of a YAML document that is either a whole StemGeneration or just a spec."""
    if "spec" in document or "kind" in document or "apiVersion" in document:
        kind = document.get("kind")
        if kind not in (None, c.KIND):
            raise SpecError([FieldError("kind", f"must be {c.KIND}, got {kind!r}")])
        api_version = document.get("apiVersion")
        if api_version not in (None, c.API_VERSION):
            raise SpecError([FieldError("apiVersion", f"must be {c.API_VERSION}, got {api_version!r}")])
        spec = document.get("spec")
        if not isinstance(spec, Mapping):
            raise SpecError([FieldError("spec", "is required and must be a mapping")])
        return dict(document.get("metadata") or {}), dict(spec)
    return {}, dict(document)
