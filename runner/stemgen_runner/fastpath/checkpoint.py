"""A fast-loading copy of a MusicGen checkpoint, written next to audiocraft's files by warmup.

audiocraft's loader unpickles `state_dict.bin` (reading and copying every byte), builds the
modules with random initialisation (a truncated-normal draw for each of the LM's ~400M
weights), then copies the checkpoint into them: tens of seconds for musicgen-small on a CPU.
The fast copy stores the same tensors as safetensors plus audiocraft's own configs, and
`load_fast` builds the very same audiocraft modules with initialisation switched off and
adopts the memory-mapped tensors as parameters (`load_state_dict(assign=True)`): no
unpickling, no random init, no copy. The result is an ordinary audiocraft `MusicGen`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

FAST_DIRNAME = "stemgen-fast"
FORMAT_VERSION = 1
LM_FILE = "lm.safetensors"
COMPRESSION_FILE = "compression.safetensors"
META_FILE = "meta.json"


def fast_dir(directory: str | Path) -> Path:
    return Path(directory) / FAST_DIRNAME


def has_fast(directory: str | Path) -> bool:
    """True when `save_fast` completed there (meta.json is written last)."""
    return (fast_dir(directory) / META_FILE).is_file()


def _yaml(config: Any) -> str:
    from omegaconf import OmegaConf

    return config if isinstance(config, str) else OmegaConf.to_yaml(OmegaConf.create(config))


def _save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    # safetensors refuses views sharing storage; a contiguous clone per tensor is always accepted.
    save_file({name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in state.items()}, str(path))
    # safetensors creates 0600 files; the cache PVC is written by warmup and read by runner pods
    # that may run as another uid, like audiocraft's own files (0644).
    path.chmod(0o644)


def save_fast(lm_checkpoint: str | Path, compression_checkpoint: str | Path, directory: str | Path) -> Path:
    """Convert audiocraft's two checkpoint files into `<directory>/stemgen-fast/` (atomically:
    meta.json last). Works for local checkpoints and for the hub cache's file paths."""
    target = fast_dir(directory)
    target.mkdir(parents=True, exist_ok=True)
    lm_package = torch.load(lm_checkpoint, map_location="cpu", mmap=True, weights_only=False)
    _save_tensors(lm_package["best_state"], target / LM_FILE)
    meta: dict[str, Any] = {"format": FORMAT_VERSION, "lm_cfg": _yaml(lm_package["xp.cfg"])}
    del lm_package
    compression_package = torch.load(compression_checkpoint, map_location="cpu", mmap=True, weights_only=False)
    if "pretrained" in compression_package:
        meta["compression_pretrained"] = compression_package["pretrained"]
    else:
        _save_tensors(compression_package["best_state"], target / COMPRESSION_FILE)
        meta["compression_cfg"] = _yaml(compression_package["xp.cfg"])
    meta_tmp = target / (META_FILE + ".tmp")
    meta_tmp.write_text(json.dumps(meta))
    os.replace(meta_tmp, target / META_FILE)
    return target


@contextlib.contextmanager
def no_weight_init() -> Iterator[None]:
    """Skip torch.nn.init's random draws while modules are built: every value is replaced by the
    checkpoint right after, and drawing ~400M truncated normals costs seconds on a CPU."""
    names = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
             "xavier_uniform_", "xavier_normal_", "orthogonal_")
    saved = {name: getattr(torch.nn.init, name) for name in names}

    def keep(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    for name in names:
        setattr(torch.nn.init, name, keep)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def _load_tensors(path: Path, device: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=device)


def _lm_config(yaml_text: str, device: str) -> Any:
    """audiocraft's `load_lm_model` config edits: device, float32 on CPU / float16 elsewhere,
    and the keys it deletes for inference."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(yaml_text)
    cfg.device = device
    cfg.dtype = "float32" if device == "cpu" else "float16"
    for dotted in ("conditioners.self_wav.chroma_stem.cache_path", "conditioners.args.merge_text_conditions_p",
                   "conditioners.args.drop_desc_p"):
        *parents, leaf = dotted.split(".")
        node = cfg
        for part in parents:
            node = node.get(part, None)
            if node is None:
                break
        if node is not None and leaf in node:
            OmegaConf.set_struct(node, False)
            del node[leaf]
            OmegaConf.set_struct(node, True)
    return cfg


def load_fast(directory: str | Path, device: str = "cpu", name: str | None = None) -> Any:
    """An audiocraft `MusicGen` from `<directory>/stemgen-fast/`, as `MusicGen.get_pretrained` would
    build it from the original files."""
    from audiocraft.models import MusicGen, builders
    from audiocraft.models.encodec import CompressionModel
    from omegaconf import OmegaConf

    source = fast_dir(directory)
    meta = json.loads((source / META_FILE).read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{source}: fast checkpoint format {meta.get('format')}, expected {FORMAT_VERSION}")
    cfg = _lm_config(meta["lm_cfg"], device)
    with no_weight_init():
        lm = builders.get_lm_model(cfg)
    state = _load_tensors(source / LM_FILE, "cpu")
    dtype = getattr(torch, cfg.dtype)
    if device != "cpu" or dtype != torch.float32:
        state = {key: value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
                 for key, value in state.items()}
    lm.load_state_dict(state, assign=True)
    lm.eval()
    lm.cfg = cfg
    if "compression_pretrained" in meta:
        compression = CompressionModel.get_pretrained(meta["compression_pretrained"], device=device)
    else:
        compression_cfg = OmegaConf.create(meta["compression_cfg"])
        compression_cfg.device = device
        with no_weight_init():
            compression = builders.get_compression_model(compression_cfg)
        compression.load_state_dict(_load_tensors(source / COMPRESSION_FILE, device), assign=True)
        compression.eval()
    if "self_wav" in lm.condition_provider.conditioners:
        lm.condition_provider.conditioners["self_wav"].match_len_on_eval = True
        lm.condition_provider.conditioners["self_wav"]._use_masking = False
    return MusicGen(name or str(directory), compression, lm)
