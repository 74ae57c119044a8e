"""A stem's tokens are a function of (seed, stem, spec) alone: generating it alone or inside a
batch with other stems, in any position, gives the same tokens.

Uses the default (float16) fast path on the real tiny checkpoint, with the native kernels (which
give a row the same bits whatever the batch at any width: test_native_kernels.py) and with
fbgemm/SDPA, which do so at the tiny model's widths only. At musicgen-small widths fbgemm and MKL
pick their GEMM blocking by row count and a row's last bits change with the batch size; the fixed
batch shape (`batch_stems`, STEMGEN_BATCH_STEMS) makes the invariance exact there too, which the
last tests exercise (bench/check_batch_invariance.py shows the difference at scale). The stem seeds come from the
runner's plan (`stem_seed(seed, stem)`, a stable hash). One test swaps the tiny model's
one-token text tokenizer for a word-level one, so descriptions of different lengths get
padded when batched: the case where plain audiocraft's batching changes a stem's conditioning.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("audiocraft")

from stemgen_runner.fastpath.engine import FastMusicGen, reference_codes  # noqa: E402
from stemgen_runner.fastpath.sampling import Sampling  # noqa: E402
from stemgen_runner.plan import stem_seed  # noqa: E402

SAMPLING = Sampling(top_k=50)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _load_tiny(directory):
    from audiocraft.models import MusicGen
    from audiocraft.modules.transformer import set_efficient_attention_backend

    from stemgen_dev.tiny_model import write_checkpoint

    set_efficient_attention_backend("torch")
    write_checkpoint(directory, "tiny", seed=7)
    return MusicGen.get_pretrained(str(directory), device="cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _load_tiny(tmp_path_factory.mktemp("tiny"))


class WordTokenizer:
    """One hashed token per word (audiocraft's whitespace tokenizer without spaCy), so texts of
    different lengths are padded to the longest in a batch, as T5 does for real MusicGen."""

    def __init__(self, n_bins: int) -> None:
        self.n_bins = n_bins

    def __call__(self, texts):
        from audiocraft.modules.conditioners import hash_trick

        words = [[] if text is None else text.split() for text in texts]
        length = max(1, max(len(w) for w in words))
        tokens = torch.zeros((len(texts), length), dtype=torch.long)
        mask = torch.zeros((len(texts), length), dtype=torch.int)
        for row, row_words in enumerate(words):
            for column, word in enumerate(row_words):
                tokens[row, column] = hash_trick(word, self.n_bins) + 1
                mask[row, column] = 1
        return tokens, mask


@pytest.fixture(scope="module")
def tiny_word_level(tmp_path_factory):
    model = _load_tiny(tmp_path_factory.mktemp("tiny-words"))
    conditioner = model.lm.condition_provider.conditioners["description"]
    conditioner.tokenizer = WordTokenizer(conditioner.embed.num_embeddings - 1)
    return model


def _stem_codes(model, stems, seed=42, descriptions=None, batch_stems=None, on_progress=None, kernels="native"):
    descriptions = descriptions or {stem: f"{stem}, lofi, 90 bpm" for stem in stems}
    engine = FastMusicGen(model, "float16", batch_stems=batch_stems, kernels=kernels)
    return engine.generate_codes([descriptions[stem] for stem in stems], [stem_seed(seed, stem) for stem in stems],
                                 SAMPLING, 1.0, on_progress=on_progress)


@pytest.mark.parametrize("kernels", ["native", "torch"])
def test_stem_alone_equals_stem_in_any_batch(tiny, kernels):
    alone = _stem_codes(tiny, ["bass"], kernels=kernels)[0]
    assert torch.equal(alone, _stem_codes(tiny, ["drums", "bass", "piano"], kernels=kernels)[1])
    assert torch.equal(alone, _stem_codes(tiny, ["bass", "guitar"], kernels=kernels)[0])
    assert torch.equal(alone, _stem_codes(tiny, ["vocals", "synth", "strings", "other", "bass"], kernels=kernels)[4])


def test_same_seed_reproduces_and_another_seed_differs(tiny):
    first = _stem_codes(tiny, ["drums", "bass"])
    assert torch.equal(first, _stem_codes(tiny, ["drums", "bass"]))
    assert not torch.equal(first, _stem_codes(tiny, ["drums", "bass"], seed=43))
    assert not torch.equal(first[0], first[1])


def test_batch_invariance_holds_with_padded_descriptions(tiny_word_level):
    descriptions = {"bass": "deep bass", "drums": "dusty boom bap drums with vinyl crackle and swing",
                    "piano": "warm rhodes piano chords in e minor"}
    alone = _stem_codes(tiny_word_level, ["bass"], descriptions=descriptions)[0]
    batched = _stem_codes(tiny_word_level, ["drums", "bass", "piano"], descriptions=descriptions)
    assert torch.equal(alone, batched[1])


def test_plain_audiocraft_batching_changes_a_padded_stem(tiny_word_level):
    """Why the fast path encodes each stem's text on its own: in plain audiocraft the short
    description is zero-padded to its batch mates' length and attends to the padding, so even
    with per-row random streams the stem changes with its company."""
    seeds = {"bass": 1, "drums": 2}
    texts = {"bass": "deep bass", "drums": "dusty boom bap drums with vinyl crackle and swing"}
    alone = reference_codes(tiny_word_level, [texts["bass"]], [seeds["bass"]], SAMPLING, 1.0)[0]
    batched = reference_codes(tiny_word_level, [texts["drums"], texts["bass"]], [seeds["drums"], seeds["bass"]],
                              SAMPLING, 1.0)[1]
    assert not torch.equal(alone, batched)


def test_fixed_batch_shape_gives_the_same_stem_in_any_request(tiny):
    """batch_stems=2: one stem is padded to two rows, three stems run as 2 + (1 padded)."""
    seen: list[float] = []
    alone = _stem_codes(tiny, ["bass"], batch_stems=2)
    three = _stem_codes(tiny, ["drums", "piano", "bass"], batch_stems=2, on_progress=seen.append)
    assert three.shape[0] == 3 and alone.shape[0] == 1
    assert torch.equal(alone[0], three[2])
    assert torch.equal(three[:2], _stem_codes(tiny, ["drums", "piano"], batch_stems=2))
    # and the same tokens as the unpadded batch gives on this model
    assert torch.equal(alone[0], _stem_codes(tiny, ["bass"])[0])
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert any(0.45 < fraction < 0.55 for fraction in seen)  # halfway after the first of two batches


def test_fixed_batch_size_must_be_positive(tiny):
    with pytest.raises(ValueError, match="batch_stems"):
        FastMusicGen(tiny, batch_stems=0)
