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


DEFAULT_MATRIX_FORMAT = "float16"
"""On GPUs dense float16, what audiocraft's own GPU inference computes in; on CPUs float16 weights
with float32 activations, multiplied by the native AVX2 kernels (or fbgemm where they are not
built; weights.matrix_format picks), measured faster than MKL float32 for 1 and 4 stems
(docs/benchmarks.md) with logits within the tolerance test_fastpath_precision states. `float32` is
audiocraft's exact arithmetic; `int8` (CPU) is faster still with a wider tolerance."""


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


FILLER_SEED = 0
"""Seed of the rows that pad a batch to its fixed shape; their tokens are thrown away."""


class FastMusicGen:
    """`batch_stems`: when set, every decoding batch has exactly this many stems (fewer are padded
    with filler rows, more run in successive batches). GEMM kernels (fbgemm, MKL, cuBLAS) pick
    their blocking by row count, so a row's last bits, and once in a while a sampled token,
    depend on the batch size; with one fixed shape a stem's tokens are bitwise the same alone or
    with any batch mates (docs/benchmarks.md, bench/check_batch_invariance.py). The native CPU
    kernels need no fixed shape: they compute a row the same way in any batch.

    `kernels`: "native" (our AVX2 kernels where built, fastpath/native) or "torch" (weights.KERNELS)."""

    def __init__(self, model: Any, matrices: str | None = None, batch_stems: int | None = None,
                 kernels: str = "native") -> None:
        check_supported(model.lm)
        if batch_stems is not None and batch_stems < 1:
            raise ValueError(f"batch_stems must be at least 1, not {batch_stems}")
        self.model = model
        self.device = next(iter(model.lm.parameters())).device
        self.weights = ModelWeights.from_lm(model.lm, matrices or DEFAULT_MATRIX_FORMAT, kernels)
        self.batch_stems = batch_stems

    def generate_codes(self, descriptions: Sequence[str], seeds: Sequence[int], sampling: Sampling,
                       duration_s: float, extend_stride_s: float = 18.0,
                       on_progress: ProgressCallback | None = None) -> torch.Tensor:
        """[stems, K, frames] codes; row b is a function of (descriptions[b], seeds[b], sampling, duration)."""
        if not descriptions or len(descriptions) != len(seeds):
            raise ValueError("one seed per description, and at least one description")
        size = self.batch_stems
        if size is None:
            return self._generate_batch(descriptions, seeds, sampling, duration_s, extend_stride_s, on_progress)
        batches = [range(start, min(start + size, len(descriptions))) for start in range(0, len(descriptions), size)]
        results = []
        for number, rows in enumerate(batches):
            filler = size - len(rows)
            batch_descriptions = [descriptions[i] for i in rows] + [descriptions[rows[0]]] * filler
            batch_seeds = [seeds[i] for i in rows] + [FILLER_SEED] * filler

            def progress(fraction: float, done: int = number) -> None:
                if on_progress is not None:
                    on_progress((done + fraction) / len(batches))

            codes = self._generate_batch(batch_descriptions, batch_seeds, sampling, duration_s, extend_stride_s,
                                         progress)
            results.append(codes[:len(rows)])
        return torch.cat(results)

    def _generate_batch(self, descriptions: Sequence[str], seeds: Sequence[int], sampling: Sampling,
                        duration_s: float, extend_stride_s: float,
                        on_progress: ProgressCallback | None) -> torch.Tensor:
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
            # One stem per EnCodec call, for the same reason as batch_stems: a stem's audio must not
            # depend on how many stems were decoded with it. One batched call measured slower on
            # the 2-core VM anyway (10.2 s against 8.3 s for four 10 s stems, docs/benchmarks.md).
            return torch.cat([self.model.generate_audio(codes[row:row + 1]) for row in range(codes.shape[0])])


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
