"""Which failures stop the Job's retries (permanent) and which let another pod try."""

from __future__ import annotations

import pytest

from stemgen_api import contract as c
from stemgen_api.validation import SpecError, require_valid
from stemgen_runner.errors import GenerationFailed, InvalidSpec, ModelNotFound, RunnerError, StorageFailed, classify
from stemgen_runner.run import is_final_attempt


@pytest.mark.parametrize(("error", "reason", "code"), [
    (InvalidSpec("x"), c.FailureReason.INVALID_SPEC, c.ExitCode.PERMANENT_FAILURE),
    (ModelNotFound("x"), c.FailureReason.MODEL_NOT_FOUND, c.ExitCode.PERMANENT_FAILURE),
    (GenerationFailed("x"), c.FailureReason.GENERATION_ERROR, c.ExitCode.RETRYABLE_FAILURE),
    (StorageFailed("x"), c.FailureReason.STORAGE_ERROR, c.ExitCode.RETRYABLE_FAILURE),
    (RunnerError("x", permanent=True), c.FailureReason.INTERNAL, c.ExitCode.PERMANENT_FAILURE),
    (MemoryError(), c.FailureReason.GENERATION_ERROR, c.ExitCode.RETRYABLE_FAILURE),
    (KeyError("bug"), c.FailureReason.INTERNAL, c.ExitCode.RETRYABLE_FAILURE),
])
def test_failure_maps_to_reason_and_exit_code(error, reason, code) -> None:
    assert classify(error) == (reason, code)


def test_spec_error_from_validation_is_permanent_and_names_the_field() -> None:
    with pytest.raises(SpecError) as raised:
        require_valid({"stems": ["drums"], "bpm": 10})
    assert classify(raised.value) == (c.FailureReason.INVALID_SPEC, c.ExitCode.PERMANENT_FAILURE)
    assert "spec.bpm" in str(raised.value)


def test_exit_codes_differ_so_the_pod_failure_policy_can_tell_them_apart() -> None:
    assert len({c.ExitCode.SUCCESS, c.ExitCode.PERMANENT_FAILURE, c.ExitCode.RETRYABLE_FAILURE}) == 3


@pytest.mark.parametrize(("retries", "attempt", "final"), [(0, 1, True), (2, 1, False), (2, 2, False), (2, 3, True)])
def test_final_attempt_follows_spec_retries(retries, attempt, final) -> None:
    assert is_final_attempt({"retries": retries}, attempt) is final
    assert is_final_attempt({}, c.DEFAULT_RETRIES + 1) is True


def test_missing_storage_configuration_is_a_permanent_storage_error() -> None:
    from stemgen_runner.settings import RunnerSettings
    from stemgen_runner.storage import BlobStore

    with pytest.raises(StorageFailed, match="AZURE_STORAGE_CONNECTION_STRING") as raised:
        BlobStore.from_settings(RunnerSettings(storage_connection_string=None, storage_account_url=None))
    assert classify(raised.value) == (c.FailureReason.STORAGE_ERROR, c.ExitCode.PERMANENT_FAILURE)
