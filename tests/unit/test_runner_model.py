"""Finding the model (local checkpoint, cache PVC, hub id) and choosing the device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stemgen_runner.errors import ModelNotFound, RunnerError
from stemgen_runner.model import choose_device, resolve_model


def _checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "state_dict.bin").write_bytes(b"x")
    (path / "compression_state_dict.bin").write_bytes(b"x")
    return path


def test_local_directory_is_used_as_is(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path / "ckpt")
    source = resolve_model(str(directory), None)
    assert source.local and source.location == str(directory)


def test_short_name_is_found_under_the_model_cache(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "stemgen" / "tiny")
    source = resolve_model("stemgen/tiny", str(tmp_path))
    assert source.local and source.location == str(tmp_path / "stemgen" / "tiny")


def test_hub_id_not_on_disk_is_a_hub_source(tmp_path: Path) -> None:
    source = resolve_model("facebook/musicgen-small", str(tmp_path))
    assert not source.local and source.location == "facebook/musicgen-small"


@pytest.mark.parametrize("name", ["/nonexistent/model", "tiny", "a/b/c"])
def test_missing_local_model_is_a_clear_permanent_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelNotFound, match=r"spec\.model") as raised:
        resolve_model(name, str(tmp_path))
    assert raised.value.permanent


def test_directory_without_checkpoint_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match=r"state_dict\.bin"):
        resolve_model(str(tmp_path / "empty"), None)


@pytest.mark.parametrize(("requested", "cuda", "expected"), [
    ("auto", True, "cuda"), ("auto", False, "cpu"), ("gpu", True, "cuda"), ("cpu", True, "cpu")])
def test_device_choice(requested: str, cuda: bool, expected: str) -> None:
    assert choose_device(requested, cuda) == expected


def test_gpu_requested_without_cuda_is_an_error_not_a_silent_cpu_run() -> None:
    with pytest.raises(RunnerError, match="no CUDA device"):
        choose_device("gpu", cuda_available=False)


def test_settings_override_wins() -> None:
    assert choose_device("gpu", cuda_available=False, override="cpu") == "cpu"


def test_cpu_threads_follow_the_cgroup_limit_not_the_node(tmp_path: Path) -> None:
    from stemgen_runner.model import cgroup_cpu_limit, cpu_threads

    limited = tmp_path / "cpu.max"
    limited.write_text("150000 100000\n")
    assert cgroup_cpu_limit(limited) == 1.5
    limited.write_text("max 100000\n")
    assert cgroup_cpu_limit(limited) is None
    assert cgroup_cpu_limit(tmp_path / "absent") is None
    assert cpu_threads(3) == 3
    assert 1 <= cpu_threads() <= (os.cpu_count() or 1)


def test_hub_model_missing_from_a_cold_cache_fails_fast_with_the_warmup_hint(tmp_path: Path, monkeypatch) -> None:
    from stemgen_runner.model import ModelSource, load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AUDIOCRAFT_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelNotFound, match="stemgen-runner warmup --model facebook/musicgen-small") as raised:
        load_model(ModelSource("facebook/musicgen-small", "facebook/musicgen-small", local=False), "cpu")
    assert raised.value.permanent
