"""Client- and runner-side validation of a StemGeneration spec.

The API server is the first line (OpenAPI schema + CEL). This module re-checks the same
schema in Python — it walks `spec_schema()` itself, so bounds cannot drift — because the
runner must never trust that a spec went through that API server (it may be read from a
file, or the CRD may be older than the runner), and the client wants errors before a round trip.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .schema import Schema, spec_schema


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """A spec that violates the contract; `errors` names every offending field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("invalid StemGeneration spec: " + "; ".join(map(str, errors)))


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _check(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    expected = schema.get("type")
    if expected:
        ok = isinstance(value, _TYPES[expected]) and not (expected in ("integer", "number") and isinstance(value, bool))
        if expected == "number" and isinstance(value, float) and not math.isfinite(value):
            ok = False
        if not ok:
            errors.append(FieldError(path, f"must be of type {expected}"))
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(FieldError(path, f"must be one of {', '.join(map(str, schema['enum']))}"))
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(FieldError(path, f"must be at least {schema['minLength']} characters"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(FieldError(path, f"must be at most {schema['maxLength']} characters"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(FieldError(path, f"must match {schema['pattern']}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            if schema.get("exclusiveMinimum") and value <= schema["minimum"]:
                errors.append(FieldError(path, f"must be greater than {schema['minimum']}"))
            elif value < schema["minimum"]:
                errors.append(FieldError(path, f"must be >= {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(FieldError(path, f"must be <= {schema['maximum']}"))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(FieldError(path, f"must have at least {schema['minItems']} item(s)"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(FieldError(path, f"must have at most {schema['maxItems']} items"))
        if schema.get("x-kubernetes-list-type") == "set":
            seen: set[Any] = set()
            for index, item in enumerate(value):
                if item in seen:
                    errors.append(FieldError(f"{path}[{index}]", f"duplicate value {item!r}"))
                seen.add(item)
        for index, item in enumerate(value):
            _check(item, schema.get("items", {}), f"{path}[{index}]", errors)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(FieldError(f"{path}.{name}", "is required"))
        for name, item in value.items():
            if name not in properties:
                errors.append(FieldError(f"{path}.{name}", "unknown field"))
            else:
                _check(item, properties[name], f"{path}.{name}", errors)


def _cross_field_errors(spec: dict[str, Any]) -> list[FieldError]:
    """The rules the CRD states in CEL, restated for Python callers."""
    errors = []
    container = (spec.get("output") or {}).get("container", "")
    if isinstance(container, str) and "--" in container:
        errors.append(FieldError("spec.output.container", "must not contain consecutive hyphens"))
    url = (spec.get("callback") or {}).get("url")
    if isinstance(url, str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(FieldError("spec.callback.url", "must be an absolute http:// or https:// URL"))
    return errors


def validate_spec(spec: Any) -> list[FieldError]:
    """Every contract violation in `spec`, with dotted field paths (`spec.bpm`, `spec.stems[1]`)."""
    errors: list[FieldError] = []
    _check(spec, spec_schema(), "spec", errors)
    if isinstance(spec, dict) and not errors:
        errors.extend(_cross_field_errors(spec))
    return errors


def with_defaults(spec: dict[str, Any], schema: Schema | None = None) -> dict[str, Any]:
    """A copy of `spec` with the schema's defaults filled in, as the API server would."""
    schema = schema or spec_schema()
    result = dict(spec)
    for name, sub in schema.get("properties", {}).items():
        if name not in result and "default" in sub:
            result[name] = sub["default"]
        if isinstance(result.get(name), dict) and sub.get("type") == "object":
            result[name] = with_defaults(result[name], sub)
    return result


def require_valid(spec: Any) -> dict[str, Any]:
    """Validated spec with defaults applied, or `SpecError` naming every bad field."""
    errors = validate_spec(spec)
    if errors:
        raise SpecError(errors)
    return with_defaults(spec)
