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


def test_warmup_writes_a_fast_copy_that_loads_the_same_model(tmp_path, caplog) -> None:
    import logging

    import torch

    from stemgen_dev.tiny_model import ensure_checkpoint
    from stemgen_runner.fastpath.checkpoint import has_fast
    from stemgen_runner.model import load_model, resolve_model

    ensure_checkpoint(tmp_path / "cache" / "fresh-tiny")
    settings = RunnerSettings(model_cache=str(tmp_path / "cache"), cpu_threads=1)
    source = resolve_model("fresh-tiny", settings.model_cache)
    original = load_model(source, "cpu", 1)  # no fast copy yet: audiocraft's loader
    assert not has_fast(source.location)

    report, ok = warmup(settings, "fresh-tiny")
    assert ok, report
    assert has_fast(source.location) and report["fastCopy"].startswith(source.location)
    with caplog.at_level(logging.INFO, logger="stemgen_runner.model"):
        fast = load_model(source, "cpu", 1, settings.model_cache)
    assert "from its fast copy" in caplog.text
    for ours, theirs in ((fast.lm, original.lm), (fast.compression_model, original.compression_model)):
        ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
        assert ours_state.keys() == theirs_state.keys()
        assert all(torch.equal(ours_state[key], theirs_state[key]) for key in ours_state)
    assert (fast.sample_rate, fast.max_duration) == (original.sample_rate, original.max_duration)
