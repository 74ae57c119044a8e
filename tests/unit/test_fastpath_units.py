"""Pure pieces of the fast path: KV cache bounds, extension windows, thread count from cgroups."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from stemgen_runner.fastpath.engine import windows  # noqa: E402
from stemgen_runner.fastpath.kv_cache import KVCache  # noqa: E402
from stemgen_runner.fastpath.threads import THREADS_ENV, cgroup_cpu_limit, recommended_threads  # noqa: E402


def test_kv_cache_returns_the_filled_prefix_and_refuses_overflow():
    cache = KVCache(num_layers=2, rows=3, heads=2, length=4, head_dim=5, dtype=torch.float32, device="cpu")
    first = torch.ones((3, 2, 3, 5))
    keys, values = cache.append(0, first, 2 * first)
    assert keys.shape == (3, 2, 3, 5) and torch.equal(values, 2 * first)
    cache.append(1, first, first)
    cache.advance(3)
    keys, _ = cache.append(0, torch.zeros((3, 2, 1, 5)), torch.zeros((3, 2, 1, 5)))
    assert keys.shape == (3, 2, 4, 5) and torch.equal(keys[:, :, :3], first)
    cache.advance(1)
    with pytest.raises(RuntimeError, match="overflow"):
        cache.append(0, torch.zeros((3, 2, 1, 5)), torch.zeros((3, 2, 1, 5)))


@pytest.mark.parametrize(("duration", "expected"), [
    (10.0, [500]),
    (30.0, [1500]),
    (45.0, [1500, 1350]),
    (60.0, [1500, 1500, 1200]),
])
def test_windows_follow_audiocraft_arithmetic(duration, expected):
    assert windows(duration, 30.0, 18.0, 50) == expected


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(tmp_path) == 2.0


def test_threads_follow_the_quota_unless_overridden(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert recommended_threads(visible_cpus=16, limit=1.5) == 2
    assert recommended_threads(visible_cpus=16, limit=None) == 16
    assert recommended_threads(visible_cpus=4, limit=0.2) == 1
    monkeypatch.setenv(THREADS_ENV, "3")
    assert recommended_threads(visible_cpus=16, limit=1.0) == 3
