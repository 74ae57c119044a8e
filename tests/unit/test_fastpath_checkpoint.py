"""The fast checkpoint copy loads into the same audiocraft MusicGen as audiocraft's own loader."""

from __future__ import annotations

import json
import stat

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("audiocraft")

from stemgen_runner.fastpath.checkpoint import (  # noqa: E402
    META_FILE,
    fast_dir,
    has_fast,
    load_fast,
    no_weight_init,
    save_fast,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from stemgen_dev.tiny_model import write_checkpoint

    directory = tmp_path_factory.mktemp("tiny")
    write_checkpoint(directory, "tiny", seed=5)
    return directory


def test_round_trip_gives_audiocraft_s_model(checkpoint):
    from audiocraft.models import MusicGen

    assert not has_fast(checkpoint)
    save_fast(checkpoint / "state_dict.bin", checkpoint / "compression_state_dict.bin", checkpoint)
    assert has_fast(checkpoint)
    for path in fast_dir(checkpoint).iterdir():
        assert path.stat().st_mode & stat.S_IROTH, f"{path.name} must be readable by runner pods of another uid"
    expected = MusicGen.get_pretrained(str(checkpoint), device="cpu")
    loaded = load_fast(checkpoint)
    assert isinstance(loaded, MusicGen)
    assert loaded.max_duration == expected.max_duration and loaded.sample_rate == expected.sample_rate
    assert loaded.frame_rate == expected.frame_rate
    for ours, theirs in ((loaded.lm, expected.lm), (loaded.compression_model, expected.compression_model)):
        ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
        assert ours_state.keys() == theirs_state.keys()
        for name, tensor in theirs_state.items():
            assert torch.equal(ours_state[name], tensor), name
    assert not loaded.lm.training and not loaded.compression_model.training
    loaded.set_generation_params(duration=0.2, top_k=10)
    torch.manual_seed(0)
    audio = loaded.generate(["bass"])
    assert audio.shape == (1, 1, 6400) and audio.abs().max() > 0


def test_unknown_format_is_refused(checkpoint):
    save_fast(checkpoint / "state_dict.bin", checkpoint / "compression_state_dict.bin", checkpoint)
    meta_path = fast_dir(checkpoint) / META_FILE
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format": 99}))
    try:
        with pytest.raises(ValueError, match="format 99"):
            load_fast(checkpoint)
    finally:
        meta_path.write_text(json.dumps(meta))


def test_weight_init_is_skipped_then_restored():
    with no_weight_init():
        linear = torch.nn.Linear(4, 4)
        sentinel = torch.full((2, 2), 7.0)
        assert torch.equal(torch.nn.init.normal_(sentinel), torch.full((2, 2), 7.0))
    assert linear.weight.shape == (4, 4)
    assert not torch.equal(torch.nn.init.normal_(torch.full((2, 2), 7.0)), torch.full((2, 2), 7.0))
