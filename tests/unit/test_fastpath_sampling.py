"""Per-row sampling: each row's draws come from its own generator only."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from stemgen_runner.fastpath.sampling import (  # noqa: E402
    Sampling,
    multinomial_rows,
    next_tokens,
    per_row_generators,
    row_generators,
    top_k_rows,
    top_p_rows,
)


def _probs(rows: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn((rows, 4, 32), generator=generator) * 3, dim=-1)


def test_a_row_draws_the_same_alone_or_among_others():
    probs = _probs(3)
    together = multinomial_rows(probs, row_generators([10, 20, 30]))
    alone = multinomial_rows(probs[1:2], row_generators([20]))
    assert together.shape == (3, 4, 1)
    assert torch.equal(together[1], alone[0])
    shuffled = multinomial_rows(probs[[2, 1, 0]], row_generators([30, 20, 10]))
    assert torch.equal(shuffled[[2, 1, 0]], together)


def test_one_generator_per_row_is_required():
    with pytest.raises(ValueError, match="3 rows but 2 generators"):
        multinomial_rows(_probs(3), row_generators([1, 2]))


def test_top_k_draws_only_from_the_k_most_likely():
    probs = _probs(2)
    allowed = torch.topk(probs, 3, dim=-1).indices
    for seed in range(20):
        tokens = top_k_rows(probs, 3, row_generators([seed, seed + 100]))
        assert (tokens == allowed).any(dim=-1).all()


def test_top_k_beyond_the_vocabulary_means_all_tokens():
    tokens = top_k_rows(_probs(1), 1000, row_generators([1]))
    assert tokens.shape == (1, 4, 1)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[[0.5, 0.3, 0.15, 0.05]]])
    for seed in range(30):
        token = int(top_p_rows(probs, 0.7, row_generators([seed])).item())
        assert token in (0, 1)


def test_greedy_ignores_generators():
    logits = torch.tensor([[[0.0, 5.0, 1.0]]])
    assert int(next_tokens(logits, Sampling(use_sampling=False), row_generators([1])).item()) == 1


def test_audiocraft_helpers_are_patched_only_inside_the_block():
    from audiocraft.utils import utils as audiocraft_utils

    original = audiocraft_utils.sample_top_k
    probs = _probs(2)
    with per_row_generators(row_generators([4, 5])):
        assert audiocraft_utils.sample_top_k is not original
        patched = audiocraft_utils.sample_top_k(probs.clone(), k=5)
    assert audiocraft_utils.sample_top_k is original
    assert torch.equal(patched, top_k_rows(probs, 5, row_generators([4, 5])))
