"""Token sampling with one random generator per batch row.

audiocraft draws every row's next token from torch's single global RNG, so a stem's audio
depends on which other stems share its batch (and in which order). Here each row owns a
`torch.Generator`: row b's draws consume only row b's stream, so a stem sampled alone and the
same stem sampled inside a batch get the same tokens from the same logits.

The arithmetic mirrors audiocraft's `LMModel._sample_next_token` and `utils.sample_top_k/p`
step for step, so `per_row_generators` (which patches those helpers) turns plain audiocraft
generation into a reference implementation our decoding loop must match token for token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    """What decides the next token from the logits (audiocraft's generation params)."""

    use_sampling: bool = True
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg_coef: float = 3.0


def row_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per row, seeded with that row's seed (e.g. derived from seed and stem)."""
    generators = []
    for seed in seeds:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))
        generators.append(generator)
    return generators


def multinomial_rows(probs: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One draw per distribution: `probs` is [B, ..., card], row b drawn with generators[b]."""
    if probs.shape[0] != len(generators):
        raise ValueError(f"{probs.shape[0]} rows but {len(generators)} generators")
    card = probs.shape[-1]
    draws = [torch.multinomial(probs[row].reshape(-1, card), num_samples=1, generator=generator)
             for row, generator in enumerate(generators)]
    return torch.stack(draws).reshape(*probs.shape[:-1], 1)


def top_k_rows(probs: torch.Tensor, k: int, generators: Sequence[torch.Generator]) -> torch.Tensor:
    top_values, _ = torch.topk(probs, min(k, probs.shape[-1]), dim=-1)  # k beyond the vocabulary: all tokens
    threshold = top_values[..., [-1]]
    probs = probs * (probs >= threshold).float()
    probs = probs / probs.sum(dim=-1, keepdim=True)
    return multinomial_rows(probs, generators)


def top_p_rows(probs: torch.Tensor, p: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    sorted_probs = sorted_probs * (~(cumulative - sorted_probs > p)).float()
    sorted_probs = sorted_probs / sorted_probs.sum(dim=-1, keepdim=True)
    picked = multinomial_rows(sorted_probs, generators)
    return torch.gather(order, -1, picked)


def next_tokens(logits: torch.Tensor, sampling: Sampling, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """[B, K, card] guided logits -> [B, K, 1] tokens, with audiocraft's branch order."""
    if sampling.use_sampling and sampling.temperature > 0.0:
        probs = torch.softmax(logits / sampling.temperature, dim=-1)
        if sampling.top_p > 0.0:
            return top_p_rows(probs, sampling.top_p, generators)
        if sampling.top_k > 0:
            return top_k_rows(probs, sampling.top_k, generators)
        return multinomial_rows(probs, generators)
    return torch.argmax(logits, dim=-1, keepdim=True)


@contextlib.contextmanager
def per_row_generators(generators: Sequence[torch.Generator]) -> Iterator[None]:
    """Make plain audiocraft sample row b from generators[b] for the duration of the block.

    audiocraft's LM calls `audiocraft.utils.utils.sample_top_k / sample_top_p / multinomial`
    through the module attribute, so swapping those three is enough; everything else (the
    model, the streaming KV cache, CFG, the codebook pattern) stays audiocraft's own. Process-
    global while active: one generation at a time, as in the runner.
    """
    from audiocraft.utils import utils as audiocraft_utils

    saved = (audiocraft_utils.sample_top_k, audiocraft_utils.sample_top_p, audiocraft_utils.multinomial)

    def sample_top_k(probs: torch.Tensor, k: int) -> torch.Tensor:
        return top_k_rows(probs, k, generators)

    def sample_top_p(probs: torch.Tensor, p: float) -> torch.Tensor:
        return top_p_rows(probs, p, generators)

    def multinomial(probs: torch.Tensor, num_samples: int, replacement: bool = False, *, generator=None):
        if num_samples != 1 or replacement or generator is not None:
            return saved[2](probs, num_samples, replacement, generator=generator)
        return multinomial_rows(probs, generators)

    audiocraft_utils.sample_top_k = sample_top_k
    audiocraft_utils.sample_top_p = sample_top_p
    audiocraft_utils.multinomial = multinomial
    try:
        yield
    finally:
        audiocraft_utils.sample_top_k, audiocraft_utils.sample_top_p, audiocraft_utils.multinomial = saved
