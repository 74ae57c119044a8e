"""`generate_stems` runs the fast loop when the model allows it and plain audiocraft otherwise;
both honour per-stem seeds and return [stems, channels, samples] audio."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("audiocraft")

from stemgen_runner.fastpath.support import FastPathUnsupported, check_supported, unsupported_reasons  # noqa: E402
from stemgen_runner.generate import fast_engine, generate_stems  # noqa: E402
from stemgen_runner.plan import SamplingParams, stem_seed  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _load(directory, **lm_overrides):
    from audiocraft.models import MusicGen, builders
    from audiocraft.modules.transformer import set_efficient_attention_backend
    from omegaconf import OmegaConf

    from stemgen_dev.tiny_model import write_checkpoint

    set_efficient_attention_backend("torch")
    write_checkpoint(directory, "tiny", seed=1)
    model = MusicGen.get_pretrained(str(directory), device="cpu")
    if lm_overrides:
        cfg = OmegaConf.to_container(model.lm.cfg)
        cfg["transformer_lm"].update(lm_overrides)
        lm = builders.get_lm_model(OmegaConf.create(cfg)).eval()
        lm.cfg = model.lm.cfg
        model = MusicGen(model.name, model.compression_model, lm)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _load(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_rope(tmp_path_factory):
    """Rotary positions: a real audiocraft option the fast loop does not implement."""
    return _load(tmp_path_factory.mktemp("tiny-rope"), positional_embedding="rope")


STEMS = ("drums", "bass")
PARAMS = SamplingParams(top_k=250)  # clamped to the tiny vocabulary (64)


def _generate(model, engine):
    return generate_stems(model, [f"{stem} loop" for stem in STEMS], [stem_seed(9, stem) for stem in STEMS],
                          PARAMS, 0.4, engine=engine)


def test_musicgen_architecture_is_supported(tiny):
    assert unsupported_reasons(tiny.lm) == []
    assert fast_engine(tiny) is fast_engine(tiny)  # built once per model


def test_unsupported_model_is_named_and_falls_back(tiny_rope):
    reasons = unsupported_reasons(tiny_rope.lm)
    assert "positional embedding 'rope'" in reasons
    with pytest.raises(FastPathUnsupported, match="rope"):
        check_supported(tiny_rope.lm)
    assert fast_engine(tiny_rope) is None
    audio = _generate(tiny_rope, "fast")
    assert audio.shape == (2, 1, 12800)


@pytest.mark.parametrize("engine", ["fast", "audiocraft"])
def test_both_engines_give_audio_and_reproduce_per_seed(tiny, engine):
    first = _generate(tiny, engine)
    assert first.shape == (2, 1, 12800) and first.dtype == torch.float32
    assert first.abs().max() > 0
    assert torch.equal(first, _generate(tiny, engine))


def test_unknown_engine_is_refused(tiny):
    with pytest.raises(ValueError, match="STEMGEN_GENERATION_ENGINE"):
        _generate(tiny, "turbo")


def test_engine_settings_from_the_environment(tmp_path, monkeypatch):
    from stemgen_runner.generate import BATCH_STEMS_ENV, MATRIX_FORMAT_ENV

    model = _load(tmp_path)  # a model of its own: engines are cached per model
    monkeypatch.setenv(MATRIX_FORMAT_ENV, "float8")
    with pytest.raises(ValueError, match=f"{MATRIX_FORMAT_ENV} must be one of float32, float16"):
        fast_engine(model)
    monkeypatch.setenv(MATRIX_FORMAT_ENV, "int8")
    monkeypatch.setenv(BATCH_STEMS_ENV, "four")
    with pytest.raises(ValueError, match=f"{BATCH_STEMS_ENV} must be a whole number"):
        fast_engine(model)
    monkeypatch.setenv(BATCH_STEMS_ENV, "4")
    engine = fast_engine(model)
    assert engine.weights.format.name == "int8" and engine.batch_stems == 4
    audio = generate_stems(model, list(STEMS), [stem_seed(3, stem) for stem in STEMS], PARAMS, 0.4)
    assert audio.shape == (2, 1, 12800) and audio.abs().max() > 0


def test_kernels_from_the_environment(tmp_path, monkeypatch, caplog):
    from stemgen_runner.fastpath import native
    from stemgen_runner.generate import KERNELS_ENV

    monkeypatch.setenv(KERNELS_ENV, "cuda-graphs")
    with pytest.raises(ValueError, match=f"{KERNELS_ENV} must be one of native, torch"):
        fast_engine(_load(tmp_path / "refused"))
    monkeypatch.setenv(KERNELS_ENV, "torch")
    assert fast_engine(_load(tmp_path / "torch")).weights.format.kernel == "fbgemm"
    monkeypatch.delenv(KERNELS_ENV)
    with caplog.at_level("INFO", logger="stemgen_runner.generate"):
        engine = fast_engine(_load(tmp_path / "default"))
    expected = "stemgen-avx2" if native.unsupported_reason() is None else "fbgemm"
    assert engine.weights.format.kernel == expected
    assert f"float16 matrices via {expected}" in caplog.text
