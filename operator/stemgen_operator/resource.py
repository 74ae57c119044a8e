"""Read-only views of a StemGeneration body, so the rest of the operator never digs in raw dicts.

The API server applies the schema's defaults, but an object written before a default existed
(or read from a fixture) may lack them, so every accessor falls back to the contract's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from stemgen_api import contract as c

Body = Mapping[str, Any]


@dataclass(frozen=True, order=True)
class Ref:
    """Identifies one request; the uid tells a re-created resource of the same name apart."""

    namespace: str
    name: str
    uid: str = ""

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def ref(body: Body) -> Ref:
    meta = body.get("metadata") or {}
    return Ref(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""))


def spec(body: Body) -> Mapping[str, Any]:
    return body.get("spec") or {}


def status(body: Body) -> Mapping[str, Any]:
    return body.get("status") or {}


def phase(body: Body) -> c.Phase:
    try:
        return c.Phase(status(body).get("phase") or c.Phase.PENDING.value)
    except ValueError:
        return c.Phase.PENDING


def is_terminal(body: Body) -> bool:
    return phase(body).terminal


def generation(body: Body) -> int | None:
    return (body.get("metadata") or {}).get("generation")


def request_id(body: Body) -> str:
    return spec(body).get("requestId") or (body.get("metadata") or {}).get("name", "")


def device(body: Body) -> c.Device:
    try:
        return c.Device(spec(body).get("device") or c.Device.AUTO.value)
    except ValueError:
        return c.Device.AUTO


def priority(body: Body) -> int:
    return int(spec(body).get("priority") or 0)


def cancel_requested(body: Body) -> bool:
    return bool(spec(body).get("cancel"))


def being_deleted(body: Body) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def callback_url(body: Body) -> str | None:
    return (spec(body).get("callback") or {}).get("url") or None


def callback_secret_ref(body: Body) -> tuple[str, str] | None:
    """(Secret name, key) of the signing secret, or None when the callback is unsigned."""
    secret_ref = (spec(body).get("callback") or {}).get("secretRef") or {}
    if not secret_ref.get("name"):
        return None
    return secret_ref["name"], secret_ref.get("key") or "secret"


def condition(body: Body, type_: c.ConditionType) -> Mapping[str, Any] | None:
    for item in status(body).get("conditions") or []:
        if item.get("type") == type_.value:
            return item
    return None


def condition_true(body: Body, type_: c.ConditionType) -> bool:
    found = condition(body, type_)
    return bool(found and found.get("status") == "True")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def created_at(body: Body) -> datetime:
    return parse_time((body.get("metadata") or {}).get("creationTimestamp")) or datetime.now(timezone.utc)


def queued_at(body: Body) -> datetime:
    """When the request joined its queue: FIFO order survives restarts because it is in status."""
    return parse_time(status(body).get("queuedTime")) or created_at(body)


def finished_at(body: Body) -> datetime | None:
    """completionTime, or the terminal condition's transition when a writer left completionTime out."""
    moment = parse_time(status(body).get("completionTime"))
    if moment:
        return moment
    current = phase(body)
    if current.terminal:
        found = condition(body, c.ConditionType(current.value))
        if found:
            return parse_time(found.get("lastTransitionTime"))
    return None
