"""Runner failures, each carrying the status reason and the exit code it maps to.

The Job's podFailurePolicy reads only the exit code, so the mapping from "what went wrong"
to "is another pod worth starting" is decided here, once, and nowhere else.
"""

from __future__ import annotations

from stemgen_api import contract as c
from stemgen_api.validation import SpecError


class RunnerError(Exception):
    """A failure the runner understands: it knows the reason to report and whether to retry."""

    reason: c.FailureReason = c.FailureReason.INTERNAL
    permanent: bool = False

    def __init__(self, message: str, *, reason: c.FailureReason | None = None, permanent: bool | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if permanent is not None:
            self.permanent = permanent

    @property
    def exit_code(self) -> c.ExitCode:
        return c.ExitCode.PERMANENT_FAILURE if self.permanent else c.ExitCode.RETRYABLE_FAILURE


class InvalidSpec(RunnerError):
    """The spec breaks the contract: no retry can fix the input."""

    reason = c.FailureReason.INVALID_SPEC
    permanent = True


class ModelNotFound(RunnerError):
    """The model is neither a local checkpoint nor in the cache: a retry would find the same cache."""

    reason = c.FailureReason.MODEL_NOT_FOUND
    permanent = True


class GenerationFailed(RunnerError):
    """Generation itself broke (CUDA OOM, a device that vanished): another pod may do better."""

    reason = c.FailureReason.GENERATION_ERROR


class StorageFailed(RunnerError):
    """Blob storage refused or could not be reached after the client's own retries."""

    reason = c.FailureReason.STORAGE_ERROR


class ResourceGone(RunnerError):
    """The StemGeneration no longer exists: there is nobody left to report to."""

    permanent = True


def classify(error: BaseException) -> tuple[c.FailureReason, c.ExitCode]:
    """Reason and exit code for any exception that ends a run.

    Unknown exceptions are retryable: a bug that happens every time will exhaust the Job's
    backoffLimit, while a flake (node pressure, a dropped connection) gets another chance.
    """
    if isinstance(error, RunnerError):
        return error.reason, error.exit_code
    if isinstance(error, SpecError):
        return c.FailureReason.INVALID_SPEC, c.ExitCode.PERMANENT_FAILURE
    if isinstance(error, MemoryError):
        return c.FailureReason.GENERATION_ERROR, c.ExitCode.RETRYABLE_FAILURE
    return c.FailureReason.INTERNAL, c.ExitCode.RETRYABLE_FAILURE


class RequestEnded(RunnerError):
    """Someone else ended the request (cancelled, or the operator failed it) while we ran.

    The phase is final, so the runner must not write over it nor send a second, contradicting callback.
    """

    permanent = True
