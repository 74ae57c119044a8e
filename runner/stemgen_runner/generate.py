"""Generation: every stem of a request in ONE batched MusicGen call.

`generate_stems` is the single entry point the rest of the runner uses. Two engines sit behind it:

* `fast` (default): `fastpath.FastMusicGen`, a lean decoding loop over audiocraft's own modules
  and weights (preallocated KV cache, text keys/values projected once, float16 matrices
  unless STEMGEN_MATRIX_FORMAT says otherwise, one random generator per stem).
  See docs/benchmarks.md for what it buys.
* `audiocraft`: plain `MusicGen.generate` with audiocraft's windowed extension, kept for
  comparison and as the fallback for models the fast loop does not support (melody, ...).

Both sample each stem from its own generator seeded with its stem seed (plan.stem_seed), so a
stem's audio is a function of (seed, stem, spec) and not of the other stems in the batch. With the
native CPU kernels (the default on AVX2 CPUs, fastpath/native) that holds to the bit; with fbgemm,
MKL or GPU kernels the last bits of a row can change with the batch size, which
STEMGEN_BATCH_STEMS removes.
Choose with STEMGEN_GENERATION_ENGINE=fast|audiocraft.

Batching is the point: the LM's cost per step is dominated by reading its weights, so B
descriptions in one batch cost little more than one, while B sequential calls cost B times.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import GenerationFailed
from .plan import SamplingParams, extend_stride_seconds

if TYPE_CHECKING:
    import torch
    from audiocraft.models import MusicGen

    from .fastpath.engine import FastMusicGen

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float], None]
"""Called with the fraction (0..1) of audio frames generated so far, across all windows."""

ENGINE_ENV = "STEMGEN_GENERATION_ENGINE"
ENGINES = ("fast", "audiocraft")
BATCH_STEMS_ENV = "STEMGEN_BATCH_STEMS"
"""0 (default): all of a request's stems in one batch. N: every decoding batch has exactly N stems
(padded; more run in successive batches), so a stem's audio is bitwise the same whatever stems
share its request (fastpath.engine.FastMusicGen) even where the kernels are not batch-invariant
(fbgemm, MKL, GPUs; the native CPU kernels are). Costs the padding's time."""
DEFAULT_BATCH_STEMS = 0
MATRIX_FORMAT_ENV = "STEMGEN_MATRIX_FORMAT"
"""float16 (default) | float32 (audiocraft's exact arithmetic) | int8 (CPU) | bfloat16: fastpath/weights.py."""
KERNELS_ENV = "STEMGEN_KERNELS"
"""native (default: our AVX2 kernels where built and supported, fastpath/native) | torch (fbgemm/SDPA only)."""

_fast_engines: weakref.WeakKeyDictionary[Any, FastMusicGen] = weakref.WeakKeyDictionary()


def _sampling(model: MusicGen, params: SamplingParams) -> Any:
    from .fastpath.sampling import Sampling

    return Sampling(use_sampling=params.use_sampling, temperature=params.temperature,
                    top_k=min(params.top_k, int(model.lm.card)),  # top-k beyond the vocabulary is meaningless
                    top_p=params.top_p, cfg_coef=params.cfg_coef)


def fast_engine(model: MusicGen) -> FastMusicGen | None:
    """The fast engine for this model (built once: it holds its own copies of the matrices),
    or None when the model uses something the fast loop does not implement."""
    from .fastpath.engine import FastMusicGen
    from .fastpath.support import FastPathUnsupported

    engine = _fast_engines.get(model)
    if engine is None:
        from .fastpath.weights import KERNELS, MATRIX_FORMATS

        matrices = os.environ.get(MATRIX_FORMAT_ENV) or None
        if matrices is not None and matrices not in MATRIX_FORMATS:
            raise ValueError(f"{MATRIX_FORMAT_ENV} must be one of {', '.join(MATRIX_FORMATS)}, not {matrices!r}")
        kernels = os.environ.get(KERNELS_ENV) or "native"
        if kernels not in KERNELS:
            raise ValueError(f"{KERNELS_ENV} must be one of {', '.join(KERNELS)}, not {kernels!r}")
        batch_text = os.environ.get(BATCH_STEMS_ENV) or str(DEFAULT_BATCH_STEMS)
        if not batch_text.isdigit():
            raise ValueError(f"{BATCH_STEMS_ENV} must be a whole number (0: no fixed batch), not {batch_text!r}")
        started = time.monotonic()
        try:
            engine = FastMusicGen(model, matrices, int(batch_text) or None, kernels)
        except FastPathUnsupported as error:
            log.warning("falling back to plain audiocraft generation: %s", error)
            return None
        fmt = engine.weights.format
        if kernels == "native" and fmt.name == "float16" and engine.device.type == "cpu" and not fmt.native:
            from .fastpath import native

            log.warning("native kernels unavailable (%s); float16 matrices use fbgemm", native.status().reason)
        log.info("fast engine: %s matrices via %s (%.0f MB), %s, built in %.1fs", fmt.name, fmt.kernel,
                 engine.weights.nbytes / 1e6,
                 f"fixed batch of {engine.batch_stems} stems" if engine.batch_stems else "one batch per request",
                 time.monotonic() - started)
        _fast_engines[model] = engine
    return engine


def _generate_audiocraft(model: MusicGen, descriptions: Sequence[str], seeds: Sequence[int], params: SamplingParams,
                         duration_s: float, on_progress: ProgressCallback | None) -> torch.Tensor:
    import torch

    from .fastpath.sampling import per_row_generators, row_generators

    total_frames = max(1, int(duration_s * model.frame_rate))

    def progress(generated: int, _to_generate: int) -> None:
        # audiocraft passes per-window counts offset by the windows already done; against our
        # own total this is a monotone fraction over the whole (possibly extended) generation.
        if on_progress is not None:
            on_progress(min(1.0, generated / total_frames))

    sampling = _sampling(model, params)
    model.set_generation_params(
        use_sampling=sampling.use_sampling, top_k=sampling.top_k, top_p=sampling.top_p,
        temperature=sampling.temperature, cfg_coef=sampling.cfg_coef, duration=duration_s,
        extend_stride=extend_stride_seconds(model.max_duration),
    )
    model.set_custom_progress_callback(progress)
    device = next(iter(model.lm.parameters())).device
    try:
        with per_row_generators(row_generators(seeds, device)), torch.inference_mode():
            return model.generate(list(descriptions), progress=True)
    finally:
        model.set_custom_progress_callback(None)


def generate_stems(model: MusicGen, descriptions: Sequence[str], seeds: Sequence[int], params: SamplingParams,
                   duration_s: float, on_progress: ProgressCallback | None = None,
                   engine: str | None = None) -> torch.Tensor:
    """`[B, C, T]` float audio at `model.sample_rate`, one row per description, in one batched call."""
    if not descriptions or len(descriptions) != len(seeds):
        raise ValueError("generate_stems needs one seed per description and at least one description")
    engine = engine or os.environ.get(ENGINE_ENV, "fast")
    if engine not in ENGINES:
        raise ValueError(f"{ENGINE_ENV} must be one of {', '.join(ENGINES)}, not {engine!r}")
    from .fastpath.threads import configure_threads

    configure_threads()  # a pod sees the node's CPUs; more threads than its quota stall (threads.py)
    try:
        fast = fast_engine(model) if engine == "fast" else None
        if fast is not None:
            audio = fast.generate(descriptions, seeds, _sampling(model, params), duration_s,
                                  extend_stride_s=extend_stride_seconds(model.max_duration), on_progress=on_progress)
        else:
            audio = _generate_audiocraft(model, descriptions, seeds, params, duration_s, on_progress)
    except (RuntimeError, MemoryError) as error:  # CUDA OOM is a RuntimeError subclass
        raise GenerationFailed(f"generation failed: {error}") from error
    if on_progress is not None:
        on_progress(1.0)
    return audio.float().cpu()
