"""Exceptions the client raises, one per outcome a caller handles differently.

A backend service usually retries `TransientAPIError`, reports `RequestFailed` to its user,
treats `RequestCancelled` as a normal end, and fixes its code on `SpecError`. The CLI maps each
to its own exit code (see `exitcodes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stemgen_api.validation import FieldError, SpecError

if TYPE_CHECKING:
    from .models import StemGeneration

__all__ = [
    "FieldError",
    "NotFound",
    "NotReady",
    "RequestCancelled",
    "RequestConflict",
    "RequestFailed",
    "SpecError",
    "StemGenError",
    "TransientAPIError",
    "WaitTimeout",
]


class StemGenError(Exception):
    """Base of every client error except `SpecError` (a `ValueError`, shared with the runner)."""


class NotFound(StemGenError):
    """The StemGeneration (or the runner pod, or a blob) does not exist."""


class NotReady(StemGenError):
    """Not there yet: stems of a request that has not Succeeded, logs of a pod not yet on a node."""


class RequestConflict(StemGenError):
    """The name is taken by a StemGeneration with a different request id."""


class TransientAPIError(StemGenError):
    """The API server kept answering 429/5xx or could not be reached after every retry."""


class _Ended(StemGenError):
    def __init__(self, resource: StemGeneration, message: str):
        self.resource = resource
        self.reason = resource.reason
        super().__init__(message)


class RequestFailed(_Ended):
    """The request ended in phase Failed; `reason` is the contract's FailureReason value."""

    def __init__(self, resource: StemGeneration):
        super().__init__(resource, f"{resource.namespace}/{resource.name} failed: "
                                   f"{resource.reason or 'unknown reason'}: {resource.message or ''}".rstrip(": "))


class RequestCancelled(_Ended):
    """The request ended in phase Cancelled."""

    def __init__(self, resource: StemGeneration):
        super().__init__(resource, f"{resource.namespace}/{resource.name} was cancelled"
                                   + (f": {resource.message}" if resource.message else ""))


class WaitTimeout(StemGenError):
    """The request did not reach a terminal phase in time; `resource` is the last state seen."""

    def __init__(self, resource: StemGeneration | None, timeout: float):
        self.resource = resource
        self.timeout = timeout
        where = f"{resource.namespace}/{resource.name}" if resource else "request"
        state = f" (phase {resource.phase_name}, {resource.progress_text})" if resource else ""
        super().__init__(f"{where} did not finish within {timeout:g}s{state}")
