"""The native AVX2 kernels (fastpath/native) against float64 references and torch's own ops.

On an x86-64 CPU with AVX2/FMA/F16C the library must be built (hack/install-python.sh does it),
so a missing build fails here instead of silently benchmarking fbgemm.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from stemgen_runner.fastpath import native  # noqa: E402

pytestmark = pytest.mark.skipif(native.unsupported_reason() is not None,
                                reason=f"native kernels unsupported here: {native.unsupported_reason()}")


def _reference_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """What linear_f16 promises: float16-rounded weights, exact arithmetic."""
    out = x.double() @ weight.half().double().T
    return out if bias is None else out + bias.double()


def _linear(x, weight, bias=None):
    packed = native.pack_f16(weight)
    padded = packed.shape[0] * packed.shape[2]
    return native.linear_f16(x, packed, None if bias is None else native.pad_bias(bias, padded), weight.shape[0])


def test_library_is_built_and_loads():
    status = native.status()
    assert status.available, status.reason
    assert native.library_path().name in status.reason


def test_pack_layout_puts_sixteen_output_columns_per_k_together():
    weight = torch.arange(20 * 3, dtype=torch.float32).view(20, 3)
    packed = native.pack_f16(weight)
    assert packed.shape == (2, 3, 16) and packed.dtype == torch.float16
    assert packed[0, 2, 5] == weight[5, 2] and packed[1, 1, 3] == weight[19, 1]
    assert torch.count_nonzero(packed[1, :, 4:]) == 0  # the padding columns are zero


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 100])
@pytest.mark.parametrize(("out_features", "in_features", "with_bias"), [(64, 32, True), (100, 37, False),
                                                                         (48, 1, True)])
def test_linear_matches_the_float64_reference(rows, out_features, in_features, with_bias):
    generator = torch.Generator().manual_seed(rows * 1000 + out_features)
    x = torch.randn(rows, in_features, generator=generator)
    weight = torch.randn(out_features, in_features, generator=generator)
    bias = torch.randn(out_features, generator=generator) if with_bias else None
    out = _linear(x, weight, bias)
    reference = _reference_linear(x, weight, bias)
    assert out.shape == (rows, out_features) and out.dtype == torch.float32
    scale = reference.abs().max().item() + 1.0
    assert (out.double() - reference).abs().max().item() < 1e-5 * scale * math.sqrt(in_features)


def test_linear_keeps_leading_dimensions():
    x = torch.randn(2, 3, 40)
    weight = torch.randn(24, 40)
    out = _linear(x, weight)
    assert out.shape == (2, 3, 24)
    assert torch.equal(out.reshape(6, 24), _linear(x.reshape(6, 40), weight))


def test_a_row_gets_the_same_bits_in_any_batch_and_with_any_thread_count():
    """The property that makes a stem independent of its batch mates (fbgemm's is not, at these widths)."""
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(3072, 1024, generator=generator) * 0.02
    bias = torch.randn(3072, generator=generator)
    row = torch.randn(1, 1024, generator=generator)
    alone = _linear(row, weight, bias)
    for rows in (2, 3, 5, 8, 13, 64):
        mates = torch.randn(rows, 1024, generator=generator)
        for position in (0, rows - 1):
            batch = torch.cat([mates[:position], row, mates[position + 1:]])
            assert torch.equal(_linear(batch, weight, bias)[position], alone[0]), (rows, position)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(_linear(row, weight, bias), alone)
    finally:
        torch.set_num_threads(saved)


def test_linear_names_what_is_wrong():
    packed = native.pack_f16(torch.randn(16, 8))
    with pytest.raises(RuntimeError, match="input must be float32"):
        native.linear_f16(torch.randn(2, 8, dtype=torch.float64), packed, None, 16)
    with pytest.raises(RuntimeError, match="packed"):
        native.linear_f16(torch.randn(2, 8), torch.randn(16, 8).half(), None, 16)
    with pytest.raises(RuntimeError, match="features"):
        native.linear_f16(torch.randn(2, 9), packed, None, 16)


def _cache(batch: int, heads: int, length: int, capacity: int, dtype: torch.dtype, seed: int):
    """A view of the filled prefix of a larger buffer, the way kv_cache.KVCache hands it out."""
    generator = torch.Generator().manual_seed(seed)
    buffer = torch.randn(2, batch, heads, capacity, native.HEAD_DIM, generator=generator).to(dtype)
    return buffer[0, :, :, :length], buffer[1, :, :, :length]


@pytest.mark.parametrize("length", [1, 7, 8, 9, 250])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_decode_attention_matches_sdpa(length, dtype):
    keys, values = _cache(3, 4, length, 300, dtype, seed=length)
    query = torch.randn(3, 4, 1, native.HEAD_DIM, generator=torch.Generator().manual_seed(1)) * 2
    out = native.decode_attention(query, keys, values, native.HEAD_DIM ** -0.5)
    # SDPA on the same (upcast) cache: the kernel keeps float32 math whatever the cache stores.
    reference = torch.nn.functional.scaled_dot_product_attention(query.double(), keys.double(), values.double())
    assert out.shape == query.shape and out.dtype == torch.float32
    assert (out.double() - reference).abs().max().item() < 2e-6


def test_decode_attention_softmax_survives_large_scores():
    keys, values = _cache(1, 2, 33, 40, torch.float32, seed=5)
    query = torch.randn(1, 2, 1, native.HEAD_DIM) * 50  # scores in the hundreds: needs the max subtraction
    out = native.decode_attention(query, keys, values, native.HEAD_DIM ** -0.5)
    reference = torch.nn.functional.scaled_dot_product_attention(query.double(), keys.double(), values.double())
    assert torch.isfinite(out).all()
    assert (out.double() - reference).abs().max().item() < 1e-5


def test_decode_attention_names_what_is_wrong():
    keys, values = _cache(1, 2, 5, 5, torch.float32, seed=0)
    with pytest.raises(RuntimeError, match="query"):
        native.decode_attention(torch.randn(1, 2, 2, native.HEAD_DIM), keys, values, 0.125)
    with pytest.raises(RuntimeError, match="keys"):
        native.decode_attention(torch.randn(1, 2, 1, native.HEAD_DIM), keys.transpose(2, 3), values, 0.125)
    with pytest.raises(RuntimeError, match="dtype"):
        native.decode_attention(torch.randn(1, 2, 1, native.HEAD_DIM), keys, values.half(), 0.125)


def test_a_cpu_without_avx2_gets_fbgemm_and_the_reason(monkeypatch):
    from stemgen_runner.fastpath.weights import matrix_format

    monkeypatch.setattr(native, "_cpu_flags", lambda: {"sse2", "avx"})
    native.status.cache_clear()
    try:
        assert native.unsupported_reason() == "CPU lacks avx2, fma, f16c"
        assert native.status() == native.NativeStatus(False, "CPU lacks avx2, fma, f16c")
        assert matrix_format("float16", torch.device("cpu")).kernel == "fbgemm"
        with pytest.raises(RuntimeError, match="native kernels unavailable: CPU lacks avx2"):
            native.linear_f16(torch.randn(1, 16), native.pack_f16(torch.randn(16, 16)), None, 16)
    finally:
        monkeypatch.undo()
        native.status.cache_clear()
    assert native.status().available
