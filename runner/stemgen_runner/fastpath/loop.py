"""The decoding loop: audiocraft's `LMModel.generate` bookkeeping around our `Decoder`.

The codebook interleaving (MusicGen's delay pattern) is audiocraft's own `Pattern` object;
the loop walks the interleaved sequence exactly as `LMModel.generate` does (same offsets,
same masking of not-yet-valid positions, same prompt handling), so with float32 weights the
tokens are those audiocraft produces given the same per-row random streams.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .conditioning import CrossGroup
from .decoder import Decoder
from .sampling import Sampling, next_tokens
from .weights import ModelWeights

StepCallback = Callable[[int, int], None]
"""(steps done, steps in this call) after every decoding step."""

UNKNOWN_TOKEN = -1


@torch.inference_mode()
def generate_codes(lm: Any, weights: ModelWeights, groups: list[CrossGroup], generators: Sequence[torch.Generator],
                   sampling: Sampling, max_gen_len: int, prompt: torch.Tensor | None = None,
                   on_step: StepCallback | None = None) -> torch.Tensor:
    """[stems, K, max_gen_len] codes (the prompt included, as audiocraft returns them)."""
    stems = len(generators)
    device = next(iter(lm.parameters())).device
    if prompt is None:
        prompt = torch.zeros((stems, lm.num_codebooks, 0), dtype=torch.long, device=device)
    if prompt.shape[-1] >= max_gen_len:
        raise ValueError(f"prompt of {prompt.shape[-1]} steps leaves nothing to generate in {max_gen_len}")
    pattern = lm.pattern_provider.get_pattern(max_gen_len)
    codes = torch.full((stems, lm.num_codebooks, max_gen_len), UNKNOWN_TOKEN, dtype=torch.long, device=device)
    codes[..., :prompt.shape[-1]] = prompt
    sequence, _, mask = pattern.build_pattern_sequence(codes, lm.special_token_id)
    start = pattern.get_first_step_with_timesteps(prompt.shape[-1])
    if start is None:
        raise ValueError("codebook pattern has no step for the prompt's end")
    total = sequence.shape[-1]
    decoder = Decoder(lm, weights, groups, stems, length=total)
    cfg_coef = sampling.cfg_coef
    previous = 0
    for offset in range(start, total):
        all_logits = decoder.step(sequence[..., previous:offset])
        conditional, unconditional = all_logits.split(stems, dim=0)
        logits = unconditional + (conditional - unconditional) * cfg_coef
        tokens = next_tokens(logits, sampling, generators)
        valid = mask[..., offset:offset + 1].expand(stems, -1, -1)
        tokens[~valid] = lm.special_token_id
        current = sequence[..., offset:offset + 1]
        sequence[..., offset:offset + 1] = torch.where(current == UNKNOWN_TOKEN, tokens, current)
        previous = offset
        if on_step is not None:
            on_step(1 + offset - start, total - start)
    out, _, out_mask = pattern.revert_pattern_sequence(sequence, special_token=UNKNOWN_TOKEN)
    out = out[..., :max_gen_len]
    if (out == UNKNOWN_TOKEN).any() or not bool((out_mask[..., :max_gen_len] == 1).all()):
        raise RuntimeError("decoding left positions unfilled")
    return out
