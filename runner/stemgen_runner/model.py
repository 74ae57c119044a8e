"""Finding and loading the MusicGen model, and choosing the device it runs on.

Loading always goes through `MusicGen.get_pretrained`, audiocraft's own path, whether the
model is a local checkpoint directory or a hub id served from the cache PVC. In a run the hub
is switched off (HF_HUB_OFFLINE) before huggingface_hub is first imported, because it reads
that variable once at import: a cold cache must fail in seconds with ModelNotFound, not start
pulling gigabytes inside every pod.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemgen_api import contract as c

from .errors import ModelNotFound, RunnerError

if TYPE_CHECKING:
    from audiocraft.models import MusicGen

log = logging.getLogger(__name__)

LM_FILENAME = "state_dict.bin"
COMPRESSION_FILENAME = "compression_state_dict.bin"


@dataclass(frozen=True)
class ModelSource:
    name: str
    """What the spec asked for."""
    location: str
    """What `MusicGen.get_pretrained` is given: a directory or a hub id."""
    local: bool


def is_checkpoint_dir(path: Path) -> bool:
    return (path / LM_FILENAME).is_file() and (path / COMPRESSION_FILENAME).is_file()


def resolve_model(name: str, model_cache: str | None) -> ModelSource:
    """A local checkpoint directory (as given, or under the cache PVC), else a hub id.

    Looking under `<model_cache>/<name>` lets a platform team drop a fine-tuned checkpoint on
    the PVC and reference it by a short name, and lets tests do the same with the tiny model.
    """
    candidates = [Path(name)]
    if model_cache and not Path(name).is_absolute():
        candidates.append(Path(model_cache) / name)
    for candidate in candidates:
        if candidate.is_dir():
            if is_checkpoint_dir(candidate):
                return ModelSource(name, str(candidate.resolve()), local=True)
            raise ModelNotFound(f"spec.model: directory {candidate} has no {LM_FILENAME} and {COMPRESSION_FILENAME}")
    looks_like_path = name.startswith(("/", "./", "../")) or name.count("/") != 1
    if looks_like_path:
        where = " or ".join(str(path) for path in candidates)
        raise ModelNotFound(f"spec.model: {name!r} is neither a checkpoint directory ({where}) "
                            "nor a hub id of the form owner/name")
    return ModelSource(name, name, local=False)


def configure_hub(model_cache: str | None, allow_download: bool) -> None:
    """Point the Hugging Face cache at the PVC and, unless allowed, switch the hub off.

    Must run before anything imports huggingface_hub/transformers (see module docstring).
    """
    if model_cache:
        os.environ.setdefault("HF_HOME", str(Path(model_cache) / "huggingface"))
    if not allow_download:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def hub_checkpoint_cached(repo_id: str) -> bool:
    """Both MusicGen checkpoint files are in the local hub cache (no network involved)."""
    from huggingface_hub import try_to_load_from_cache

    cache_dir = os.environ.get("AUDIOCRAFT_CACHE_DIR")
    for filename in (LM_FILENAME, COMPRESSION_FILENAME):
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
        if not isinstance(found, str):
            return False
    return True


def choose_device(requested: str, cuda_available: bool, override: str | None = None) -> str:
    """The torch device for `spec.device`. `auto` takes a GPU when the pod got one; `gpu` without
    one is an error rather than a silent 50x slower CPU run on a GPU-priced request."""
    if override:
        return override
    if requested == c.Device.GPU.value:
        if not cuda_available:
            raise RunnerError("spec.device is 'gpu' but this pod sees no CUDA device "
                              "(check the node's NVIDIA device plugin and the pod's nvidia.com/gpu limit)")
        return "cuda"
    if requested == c.Device.CPU.value:
        return "cpu"
    return "cuda" if cuda_available else "cpu"


def describe_device(device: str) -> str:
    """What `status.device` shows, e.g. `cuda:0 (NVIDIA H100 80GB HBM3)` or `cpu (8 threads)`."""
    import torch

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def cgroup_cpu_limit(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """The container's CPU limit in cores (cgroup v2 `cpu.max`), or None when unlimited/unknown."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def cpu_threads(requested: int | None = None) -> int:
    """Threads for torch's CPU kernels: the pod's CPU limit, not the node's core count.

    torch sizes its pool from the machine's cores; in a pod limited to 4 of 64 cores that is 16x
    oversubscription, and MusicGen's many small per-step ops then spend their time in spinning and
    CFS throttling. Measured on a busy 2-core machine: the tiny model took 16.7 s with 2 threads
    against 1.6 s with 1.
    """
    if requested:
        return max(1, requested)
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        available = min(available, max(1, int(limit)))
    return max(1, available)


def prepare_torch(device: str, threads: int | None = None) -> None:
    """Attention backend, CPU threads and matmul precision for the device.

    audiocraft's `torch` backend is PyTorch's scaled_dot_product_attention: flash/memory-efficient
    kernels on CUDA, a fused kernel on CPU, and no dependency on xformers' CUDA-only ops. On GPU the
    loaders already build the LM in float16 and generation runs under fp16 autocast; on CPU float32
    is kept (bf16 matmuls are slower than fp32 on CPUs without AMX and change the samples).
    """
    import torch
    from audiocraft.modules.transformer import set_efficient_attention_backend

    set_efficient_attention_backend("torch")
    torch.set_num_threads(cpu_threads(threads))
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def fast_copy_dir(source: ModelSource, model_cache: str | None) -> Path | None:
    """Where warmup keeps the memory-mappable copy (stemgen_runner.fastpath.checkpoint) of a model."""
    if source.local:
        return Path(source.location)
    if model_cache:
        return Path(model_cache) / "stemgen-fast-models" / source.name.replace("/", "--")
    return None


def _fresh_fast_copy(source: ModelSource, directory: Path | None) -> bool:
    from .fastpath.checkpoint import META_FILE, fast_dir, has_fast

    if directory is None or not has_fast(directory):
        return False
    if not source.local:
        return True
    # A checkpoint replaced after warmup must not be shadowed by the old copy.
    written = (fast_dir(directory) / META_FILE).stat().st_mtime
    return all((directory / name).stat().st_mtime <= written for name in (LM_FILENAME, COMPRESSION_FILENAME))


def load_model(source: ModelSource, device: str, threads: int | None = None,
               model_cache: str | None = None) -> MusicGen:
    """The model, from warmup's fast copy when there is a fresh one, else `MusicGen.get_pretrained`.

    The fast copy (safetensors, no random init) loads a musicgen-small-sized model ~10x faster than
    audiocraft's loader and yields the same `MusicGen`; any problem with it falls back to the original.
    Missing files become ModelNotFound (permanent).
    """
    prepare_torch(device, threads)
    fast = fast_copy_dir(source, model_cache)
    if _fresh_fast_copy(source, fast):
        from .fastpath.checkpoint import load_fast

        try:
            model = load_fast(fast, device, name=source.name)
            log.info("loaded model %s from its fast copy in %s on %s", source.name, fast, device)
            return model
        except Exception as error:  # a broken copy costs speed, never the request
            log.warning("fast copy of %s unusable (%s); loading with audiocraft", source.name, error)
    if not source.local and not hub_checkpoint_cached(source.location) \
            and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelNotFound(
            f"spec.model: {source.name!r} is not in the model cache (HF_HOME={os.environ.get('HF_HOME', '~')}) and "
            f"downloads are off; fill the cache with `stemgen-runner warmup --model {source.name}`")
    from audiocraft.models import MusicGen

    try:
        model = MusicGen.get_pretrained(source.location, device=device)
    except (FileNotFoundError, OSError) as error:
        raise ModelNotFound(f"spec.model: cannot load {source.name!r}: {error}") from error
    log.info("loaded model %s from %s on %s (window %.0fs, %d Hz, %d channel(s))", source.name, source.location,
             device, model.max_duration, model.sample_rate, model.audio_channels)
    return model


def write_fast_copy(source: ModelSource, model_cache: str | None) -> Path | None:
    """Warmup's step after a successful load: convert the checkpoint files into the fast copy."""
    from .fastpath.checkpoint import save_fast

    target = fast_copy_dir(source, model_cache)
    if target is None:
        return None
    if source.local:
        location = Path(source.location)
        lm_file, compression_file = location / LM_FILENAME, location / COMPRESSION_FILENAME
    else:
        from huggingface_hub import hf_hub_download

        lm_file = Path(hf_hub_download(source.location, LM_FILENAME))
        compression_file = Path(hf_hub_download(source.location, COMPRESSION_FILENAME))
    return save_fast(lm_file, compression_file, target)


def model_summary(model: Any) -> dict[str, Any]:
    return {"sampleRate": int(model.sample_rate), "channels": int(model.audio_channels),
            "frameRate": float(model.frame_rate), "windowSeconds": float(model.max_duration)}
