"""Pure pieces of the fast path: KV cache bounds, extension windows, thread count from cgroups,
matrix formats."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from stemgen_runner.fastpath.engine import windows  # noqa: E402
from stemgen_runner.fastpath.kv_cache import KVCache  # noqa: E402
from stemgen_runner.fastpath.threads import THREADS_ENV, cgroup_cpu_limit, recommended_threads  # noqa: E402
from stemgen_runner.fastpath.weights import MATRIX_FORMATS, matrix_format  # noqa: E402


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


def test_matrix_formats_multiply_like_float32_within_their_precision():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 32, generator=generator) * 0.1
    bias = torch.randn(64, generator=generator)
    x = torch.randn(3, 5, 32, generator=generator)
    exact = torch.nn.functional.linear(x, weight, bias)
    bounds = {"float32": 0.0, "float16": 1e-3, "bfloat16": 1e-2, "int8": 5e-2}
    assert set(bounds) == set(MATRIX_FORMATS)
    for name, bound in bounds.items():
        fmt = matrix_format(name, torch.device("cpu"))
        linear = fmt.make(weight, bias)
        y = linear(x)
        assert y.shape == exact.shape and y.dtype == fmt.compute_dtype, name
        relative = float((y.float() - exact).norm() / exact.norm())
        assert relative <= bound, (name, relative)
    assert matrix_format("int8", torch.device("cpu")).make(weight, bias).nbytes < weight.numel() * 2


def test_unknown_or_unsupported_matrix_format_is_refused():
    with pytest.raises(ValueError, match="float16, bfloat16, int8"):
        matrix_format("float8", torch.device("cpu"))
    with pytest.raises(ValueError, match="CPU-only"):
        matrix_format("int8", torch.device("meta"))
