"""Generation: every stem of a request in ONE batched MusicGen call.

`generate_stems` is the single entry point the rest of the runner uses, so a faster
implementation (see the `fastpath` package) can replace its internals without touching the
orchestration. This one is plain audiocraft: `set_generation_params` + `generate`, with
audiocraft's own windowed extension when the duration exceeds the model's window.

Batching is the point: the LM's cost per step is dominated by reading its weights, so B
descriptions in one batch cost little more than one, while B sequential calls cost B times.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .errors import GenerationFailed
from .plan import SamplingParams, extend_stride_seconds

if TYPE_CHECKING:
    import torch
    from audiocraft.models import MusicGen

ProgressCallback = Callable[[float], None]
"""Called with the fraction (0..1) of audio frames generated so far, across all windows."""


def batch_seed(seeds: Sequence[int]) -> int:
    """The one global torch seed for a batch. audiocraft samples every row from the global RNG,
    so per-row seeds cannot be honoured separately here: the batch's audio is a function of all
    its stems' seeds (i.e. of the spec's seed and stem list), which is what the contract promises."""
    if len(seeds) == 1:
        return int(seeds[0])
    digest = hashlib.sha256(",".join(str(int(seed)) for seed in seeds).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def generate_stems(model: MusicGen, descriptions: Sequence[str], seeds: Sequence[int], params: SamplingParams,
                   duration_s: float, on_progress: ProgressCallback | None = None) -> torch.Tensor:
    """`[B, C, T]` float audio at `model.sample_rate`, one row per description, in one generate call."""
    import torch

    if not descriptions or len(descriptions) != len(seeds):
        raise ValueError("generate_stems needs one seed per description and at least one description")
    total_frames = max(1, int(duration_s * model.frame_rate))

    def progress(generated: int, _to_generate: int) -> None:
        # audiocraft passes per-window counts offset by the windows already done; against our
        # own total this is a monotone fraction over the whole (possibly extended) generation.
        if on_progress is not None:
            on_progress(min(1.0, generated / total_frames))

    model.set_generation_params(
        use_sampling=params.use_sampling,
        top_k=min(params.top_k, int(model.lm.card)),  # top-k beyond the vocabulary is meaningless
        top_p=params.top_p,
        temperature=params.temperature,
        cfg_coef=params.cfg_coef,
        duration=duration_s,
        extend_stride=extend_stride_seconds(model.max_duration),
    )
    model.set_custom_progress_callback(progress)
    torch.manual_seed(batch_seed(seeds))
    try:
        with torch.inference_mode():
            audio = model.generate(list(descriptions), progress=True)
    except (RuntimeError, MemoryError) as error:  # CUDA OOM is a RuntimeError subclass
        raise GenerationFailed(f"generation failed: {error}") from error
    finally:
        model.set_custom_progress_callback(None)
    if on_progress is not None:
        on_progress(1.0)
    return audio.float().cpu()
