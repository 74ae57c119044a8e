"""Status reporting: every status change the runner makes goes through `StatusReporter`.

Patches are JSON merge patches on the status subresource, so the runner touches only the
fields it owns and leaves the operator's (queuedTime, pool, attempts, …) alone. The one
exception is `conditions`: a merge patch replaces a list whole, so conditions are merged
into a fresh read of the object just before each phase change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from stemgen_api import contract as c

from .errors import RequestEnded, ResourceGone

log = logging.getLogger(__name__)

Status = dict[str, Any]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_rfc3339(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def set_condition(conditions: list[dict[str, Any]] | None, type_: c.ConditionType, status: bool, reason: str,
                  message: str, now: datetime, observed_generation: int | None) -> list[dict[str, Any]]:
    """`conditions` with one condition set, Kubernetes-style: lastTransitionTime moves only when
    the status flips, so `kubectl wait` and dashboards see real transitions."""
    value = "True" if status else "False"
    result = []
    found = False
    for condition in conditions or []:
        if condition.get("type") != type_.value:
            result.append(condition)
            continue
        found = True
        transition = condition.get("lastTransitionTime") if condition.get("status") == value else None
        result.append(_condition(type_, value, reason, message, transition or rfc3339(now), observed_generation))
    if not found:
        result.append(_condition(type_, value, reason, message, rfc3339(now), observed_generation))
    return result


def _condition(type_: c.ConditionType, value: str, reason: str, message: str, transition: str,
               observed_generation: int | None) -> dict[str, Any]:
    condition = {"type": type_.value, "status": value, "reason": reason, "message": message[:32768],
                 "lastTransitionTime": transition}
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    return condition


def progress(stage: c.ProgressStage, percent: int) -> dict[str, Any]:
    return {"stage": stage.value, "percent": max(0, min(100, int(percent)))}


class ProgressThrottle:
    """Lets a progress update through when the stage changes or `interval` seconds have passed,
    and never one that goes backwards within a stage.

    Why the second rule: audiocraft's progress counts restart per extension window, and its first
    window counts the frames later re-used as the next window's context, so the raw fraction dips
    when the second window starts. A percent that goes backwards reads as a bug to a user.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._last_at: float | None = None
        self._last: tuple[str, int] | None = None

    def allow(self, stage: c.ProgressStage, percent: int) -> bool:
        now = self.clock()
        current = (stage.value, percent)
        if current == self._last:
            return False
        if self._last is not None and self._last[0] == stage.value and percent < self._last[1]:
            return False
        if self._last is not None and self._last[0] == stage.value and self._last_at is not None \
                and now - self._last_at < self.interval:
            return False
        self._last, self._last_at = current, now
        return True


class StatusReporter:
    """Reads the StemGeneration and patches its status, retrying what the apiserver may fix itself."""

    def __init__(self, api: CustomObjectsApi, namespace: str, name: str, *, progress_interval: float = 1.0,
                 attempts: int = 4, backoff: float = 0.5, clock: Callable[[], datetime] | None = None):
        self.api = api
        self.namespace = namespace
        self.name = name
        self.attempts = attempts
        self.backoff = backoff
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.throttle = ProgressThrottle(progress_interval)
        self.generation: int | None = None

    def read(self) -> dict[str, Any]:
        obj = self._call(lambda: self.api.get_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, c.PLURAL, self.name))
        self.generation = obj.get("metadata", {}).get("generation")
        return obj

    def patch(self, status: Status) -> dict[str, Any]:
        body = {"status": status}
        return self._call(lambda: self.api.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, self.namespace, c.PLURAL, self.name, body))

    def transition(self, status: Status, conditions: list[tuple[c.ConditionType, bool, str, str]]) -> dict[str, Any]:
        """A phase change: merge conditions into the live object's, then patch them with `status`.

        The patch carries the resourceVersion it was decided on, so a concurrent writer (the
        operator cancelling or failing the request) makes it conflict instead of being overwritten;
        a request already in a terminal phase is never moved to another phase.
        """
        for _ in range(self.attempts * 2):
            live = self.read()
            live_status = live.get("status") or {}
            phase = live_status.get("phase")
            if "phase" in status and phase != status["phase"] and phase in {p.value for p in c.TERMINAL_PHASES}:
                raise RequestEnded(f"StemGeneration {self.namespace}/{self.name} is already {phase}: "
                                   f"{live_status.get('reason', '')}")
            now = self.clock()
            current = live_status.get("conditions")
            for type_, value, reason, message in conditions:
                current = set_condition(current, type_, value, reason, message, now, self.generation)
            body = {"metadata": {"resourceVersion": live["metadata"]["resourceVersion"]},
                    "status": {**status, "conditions": current, "observedGeneration": self.generation}}
            try:
                return self.api.patch_namespaced_custom_object_status(
                    c.GROUP, c.VERSION, self.namespace, c.PLURAL, self.name, body)
            except ApiException as error:
                if error.status == 404:
                    raise ResourceGone(f"StemGeneration {self.namespace}/{self.name} not found") from error
                if error.status != 409 and error.status != 429 and (error.status or 0) < 500:
                    raise
                log.info("status patch answered %s; re-reading and deciding again", error.status)
                time.sleep(self.backoff if error.status != 409 else 0)
        raise RequestEnded(f"StemGeneration {self.namespace}/{self.name}: status kept changing under us")

    def progress(self, stage: c.ProgressStage, percent: int) -> None:
        """Throttled progress; a failed progress patch is logged, never fatal."""
        if not self.throttle.allow(stage, percent):
            return
        try:
            self.patch({"progress": progress(stage, percent)})
        except Exception as error:  # progress is best effort; the terminal status is what matters
            log.warning("progress patch failed: %s", error)

    def _call(self, request: Callable[[], Any]) -> Any:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return request()
            except ApiException as error:
                if error.status == 404:
                    raise ResourceGone(f"StemGeneration {self.namespace}/{self.name} not found") from error
                if (error.status not in (409, 429) and (error.status or 0) < 500) or attempt == self.attempts:
                    raise
                log.warning("apiserver answered %s; retrying in %.1fs", error.status, delay)
            except HTTPError as error:
                if attempt == self.attempts:
                    raise
                log.warning("apiserver unreachable (%s); retrying in %.1fs", error, delay)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")
