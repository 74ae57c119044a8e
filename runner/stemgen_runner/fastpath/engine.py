"""`FastMusicGen`: generate stems with the fast loop from a loaded audiocraft `MusicGen`.

The model is loaded by audiocraft (or `checkpoint.load_fast`) and stays audiocraft's: its
conditioners, codebook pattern, LM modules, EnCodec decoder and window/extension rules are
used as they are. Only the per-step loop is ours. `reference_codes` runs plain audiocraft with
the same per-row random streams; it is the comparison the equivalence tests and the
benchmark use, and the fallback for models the fast loop does not support.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .conditioning import build_cross_groups
from .loop import generate_codes
from .sampling import Sampling, per_row_generators, row_generators
from .support import check_supported
from .weights import ModelWeights

ProgressCallback = Callable[[float], None]
"""Fraction (0..1) of the requested audio frames generated so far."""


def default_matrix_format(device: torch.device) -> str:
    """float16 matrices everywhere. On GPUs that is what audiocraft's own GPU inference computes
    in; on CPUs it is fbgemm's packed float16 GEMM with float32 activations (weights.py), measured
    faster than MKL float32 for 1 and 4 stems (docs/benchmarks.md) with logits within the tolerance
    test_fastpath_precision states. `float32` is audiocraft's exact arithmetic; `int8` (CPU) is
    faster still with a wider tolerance."""
    return "float16"


def windows(duration_s: float, max_duration_s: float, extend_stride_s: float, frame_rate: float) -> list[int]:
    """Lengths (in frames) of audiocraft's generation windows, the same arithmetic as
    `BaseGenModel._generate_tokens`, so window boundaries and prompts match plain audiocraft."""
    total = int(duration_s * frame_rate)
    if duration_s <= max_duration_s:
        return [total]
    stride = int(frame_rate * extend_stride_s)
    lengths: list[int] = []
    offset, prompt_length = 0, 0
    while offset + prompt_length < total:
        chunk = min(duration_s - offset / frame_rate, max_duration_s)
        lengths.append(int(chunk * frame_rate))
        prompt_length = lengths[-1] - stride
        offset += stride
    return lengths


class FastMusicGen:
    def __init__(self, model: Any, matrices: str | None = None) -> None:
        check_supported(model.lm)
        self.model = model
        self.device = next(iter(model.lm.parameters())).device
        self.weights = ModelWeights.from_lm(model.lm, matrices or default_matrix_format(self.device))

    def generate_codes(self, descriptions: Sequence[str], seeds: Sequence[int], sampling: Sampling,
                       duration_s: float, extend_stride_s: float = 18.0,
                       on_progress: ProgressCallback | None = None) -> torch.Tensor:
        """[stems, K, frames] codes; row b is a function of (descriptions[b], seeds[b], sampling, duration)."""
        if not descriptions or len(descriptions) != len(seeds):
            raise ValueError("one seed per description, and at least one description")
        model, lm = self.model, self.model.lm
        if extend_stride_s >= model.max_duration and duration_s > model.max_duration:
            raise ValueError("extend_stride_s must be shorter than the model window")
        generators = row_generators(seeds, self.device)
        with torch.inference_mode():
            groups = build_cross_groups(lm, self.weights, list(descriptions))
        lengths = windows(duration_s, model.max_duration, extend_stride_s, model.frame_rate)
        stride = int(model.frame_rate * extend_stride_s)
        total_frames = max(1, int(duration_s * model.frame_rate))
        chunks: list[torch.Tensor] = []
        prompt: torch.Tensor | None = None
        done_frames = 0
        for length in lengths:
            prompt_frames = 0 if prompt is None else prompt.shape[-1]
            new_frames = length - prompt_frames

            def on_step(step: int, steps: int, base: int = done_frames, new: int = new_frames) -> None:
                if on_progress is not None:
                    on_progress(min(1.0, (base + new * step / steps) / total_frames))

            codes = generate_codes(lm, self.weights, groups, generators, sampling, length, prompt, on_step)
            chunks.append(codes[..., prompt_frames:])
            done_frames += new_frames
            prompt = codes[..., stride:]
        return torch.cat(chunks, dim=-1)

    def generate(self, descriptions: Sequence[str], seeds: Sequence[int], sampling: Sampling, duration_s: float,
                 extend_stride_s: float = 18.0, on_progress: ProgressCallback | None = None) -> torch.Tensor:
        """[stems, channels, samples] audio, decoded by the model's own EnCodec."""
        codes = self.generate_codes(descriptions, seeds, sampling, duration_s, extend_stride_s, on_progress)
        with torch.inference_mode():
            return self.model.generate_audio(codes)


def reference_codes(model: Any, descriptions: Sequence[str], seeds: Sequence[int], sampling: Sampling,
                    duration_s: float, extend_stride_s: float = 18.0) -> torch.Tensor:
    """Plain audiocraft (`MusicGen._generate_tokens`: streaming LM, its own KV cache, its own CFG
    batch and windowing), sampling row b from a generator seeded with seeds[b]."""
    model.set_generation_params(use_sampling=sampling.use_sampling, top_k=sampling.top_k, top_p=sampling.top_p,
                                temperature=sampling.temperature, cfg_coef=sampling.cfg_coef,
                                duration=duration_s, extend_stride=extend_stride_s)
    device = next(iter(model.lm.parameters())).device
    attributes, _ = model._prepare_tokens_and_attributes(list(descriptions), None)
    with per_row_generators(row_generators(seeds, device)), torch.inference_mode():
        return model._generate_tokens(attributes, None, progress=False)
