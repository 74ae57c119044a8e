"""The fast loop computes what plain audiocraft computes.

Reference: audiocraft's own `MusicGen._generate_tokens` (streaming LM, its KV cache, its CFG
batch, its windowed extension) on the real tiny checkpoint loaded by `MusicGen.get_pretrained`,
with only the token draws routed to one generator per row (`per_row_generators`). With float32
matrices the fast loop must produce the very same tokens.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("audiocraft")

from stemgen_runner.fastpath.engine import FastMusicGen, reference_codes, windows  # noqa: E402
from stemgen_runner.fastpath.sampling import Sampling  # noqa: E402


def _load_tiny(directory):
    from audiocraft.models import MusicGen
    from audiocraft.modules.transformer import set_efficient_attention_backend

    from stemgen_dev.tiny_model import write_checkpoint

    set_efficient_attention_backend("torch")
    write_checkpoint(directory, "tiny", seed=3)
    return MusicGen.get_pretrained(str(directory), device="cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices gain nothing from threads, and on a shared CPU OpenMP barriers make them slow."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _load_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_short_window(tmp_path_factory):
    """Same architecture with a 1 s window, so 2.5 s of audio takes three windows with prompts.
    (MusicGen's constructor insists on its default 18 s stride, so the window is set afterwards.)"""
    model = _load_tiny(tmp_path_factory.mktemp("tiny-window"))
    model.max_duration = 1.0
    return model


@pytest.mark.parametrize("sampling", [
    Sampling(top_k=50),
    Sampling(top_k=0, top_p=0.9, temperature=0.8, cfg_coef=5.0),
    Sampling(top_k=0, top_p=0.0),
    Sampling(use_sampling=False),
], ids=["top-k", "top-p", "plain-multinomial", "greedy"])
def test_float32_tokens_equal_audiocraft_for_one_stem(tiny, sampling):
    expected = reference_codes(tiny, ["deep bass, 90 bpm"], [11], sampling, duration_s=1.0)
    got = FastMusicGen(tiny, matrices="float32").generate_codes(["deep bass, 90 bpm"], [11], sampling, 1.0)
    assert got.shape == expected.shape == (1, 4, 50)
    assert torch.equal(got, expected)


def test_float32_tokens_equal_audiocraft_for_a_batch(tiny):
    """Three stems in one call: same CFG batch layout, same per-row streams, same tokens.
    (Exact here because the tiny model's float32 matmuls give each row the same result whatever
    the batch size; on large shapes MKL may round a row differently in a bigger batch, see
    test_fastpath_reproducibility for the float16 path where that cannot happen.)"""
    descriptions, seeds = ["drums", "bass", "piano"], [1, 2, 3]
    expected = reference_codes(tiny, descriptions, seeds, Sampling(top_k=50), duration_s=1.0)
    got = FastMusicGen(tiny, matrices="float32").generate_codes(descriptions, seeds, Sampling(top_k=50), 1.0)
    assert torch.equal(got, expected)


def test_float32_tokens_equal_audiocraft_across_extension_windows(tiny_short_window):
    model = tiny_short_window
    assert windows(2.5, 1.0, 0.6, model.frame_rate) == [50, 50, 50, 35]
    expected = reference_codes(model, ["strings"], [5], Sampling(top_k=50), duration_s=2.5, extend_stride_s=0.6)
    got = FastMusicGen(model, matrices="float32").generate_codes(["strings"], [5], Sampling(top_k=50), 2.5,
                                                                  extend_stride_s=0.6)
    assert got.shape == expected.shape == (1, 4, 125)
    assert torch.equal(got, expected)


def test_progress_reaches_one_and_is_monotone(tiny_short_window):
    seen: list[float] = []
    FastMusicGen(tiny_short_window).generate_codes(["x"], [1], Sampling(), 2.5, extend_stride_s=0.6,
                                                   on_progress=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(1.0)
    assert 0 < seen[0] < 0.05


def test_audio_shape_matches_plain_generate(tiny):
    tiny.set_generation_params(duration=0.5, top_k=50)
    plain = tiny.generate(["a", "b"])
    fast = FastMusicGen(tiny).generate(["a", "b"], [1, 2], Sampling(), 0.5)
    assert fast.shape == plain.shape == (2, 1, 16000)
    assert fast.abs().max() > 0
