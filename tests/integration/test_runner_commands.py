"""`stemgen-runner warmup` and `check` on the tiny checkpoint, in-process."""

from __future__ import annotations

import socket

from stemgen_runner.check import check
from stemgen_runner.settings import RunnerSettings
from stemgen_runner.warmup import warmup

from .conftest import TINY_MODEL


def _dead_blob_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")


def test_warmup_loads_a_cached_checkpoint_by_name(tiny_model_cache) -> None:
    report, ok = warmup(RunnerSettings(model_cache=str(tiny_model_cache), cpu_threads=1), TINY_MODEL)
    assert ok, report
    assert report["sampleRate"] == 32000 and report["windowSeconds"] == 30.0
    assert report["location"] == str(tiny_model_cache / TINY_MODEL)


def test_warmup_of_an_unknown_model_fails_with_the_reason(tiny_model_cache) -> None:
    report, ok = warmup(RunnerSettings(model_cache=str(tiny_model_cache)), "no-such-model")
    assert not ok and "spec.model" in report["error"]


def test_check_is_not_ready_when_blob_storage_is_unreachable(tiny_model_cache) -> None:
    settings = RunnerSettings(model_cache=str(tiny_model_cache), storage_connection_string=_dead_blob_endpoint(),
                              storage_retry_total=0, storage_timeout=2, cpu_threads=1)
    report = check(settings, TINY_MODEL)
    assert report["ready"] is False
    assert report["model"]["loadable"] is True
    assert report["storage"]["reachable"] is False and "unreachable" in report["storage"]["error"]


def test_check_is_not_ready_without_the_model(azurite, tiny_model_cache) -> None:
    settings = RunnerSettings(model_cache=str(tiny_model_cache), storage_connection_string=azurite.connection_string)
    report = check(settings, "stemgen/absent", load=False)
    assert report["ready"] is False and report["model"]["cached"] is False
    assert report["storage"]["reachable"] is True
