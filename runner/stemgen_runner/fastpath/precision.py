"""How far a smaller matrix format moves the logits, measured on a fixed token sequence.

Used by the precision test (tiny model) and the benchmark (musicgen-small shapes) to state
the tolerance of each matrix format against float32: both decoders are fed the same codes
(teacher forcing), so the comparison isolates arithmetic, not diverging samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .conditioning import build_cross_groups
from .decoder import Decoder
from .weights import ModelWeights


@dataclass(frozen=True)
class LogitDrift:
    max_abs: float
    """Largest |logit - logit_fp32| over all steps, rows, codebooks and tokens."""
    rms_relative: float
    """RMS of the difference over RMS of the float32 logits."""
    top1_agreement: float
    """Share of (step, row, codebook) whose most likely token is the same."""


@torch.inference_mode()
def teacher_forced_logits(lm: Any, weights: ModelWeights, descriptions: Sequence[str],
                          codes: torch.Tensor) -> torch.Tensor:
    """[steps, 2*stems, K, card] raw logits (conditional rows, then unconditional) of a decoder fed
    `codes` ([stems, K, S]) one position at a time, whatever it would have sampled."""
    stems, steps = codes.shape[0], codes.shape[-1]
    decoder = Decoder(lm, weights, build_cross_groups(lm, weights, list(descriptions)), stems, steps)
    return torch.stack([decoder.step(codes[..., step:step + 1]) for step in range(steps)])


@torch.inference_mode()
def logit_drift(lm: Any, descriptions: Sequence[str], codes: torch.Tensor, matrices: str,
                cfg_coef: float = 3.0, kernels: str = "native") -> LogitDrift:
    """Compare CFG-guided logits of `matrices` (a weights.MATRIX_FORMATS name) against float32
    along `codes` ([stems, K, S] in pattern-sequence order, e.g. audiocraft's interleaved sequence).
    `kernels` applies to `matrices` (weights.KERNELS); float32 always runs torch's."""
    stems = codes.shape[0]
    runs = []
    for run_format, run_kernels in (("float32", "torch"), (matrices, kernels)):
        logits = teacher_forced_logits(lm, ModelWeights.from_lm(lm, run_format, run_kernels), descriptions, codes)
        conditional, unconditional = logits.split(stems, dim=1)
        runs.append(unconditional + (conditional - unconditional) * cfg_coef)
    reference, candidate = runs
    difference = candidate - reference
    return LogitDrift(
        max_abs=float(difference.abs().max()),
        rms_relative=float(difference.pow(2).mean().sqrt() / reference.pow(2).mean().sqrt()),
        top1_agreement=float((candidate.argmax(-1) == reference.argmax(-1)).float().mean()),
    )
