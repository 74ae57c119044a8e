"""Hand-written CPU kernels (AVX2/FMA/F16C) for the two operations a decoding step is made of.

* `linear_f16`: y = x W^T + b with float16 weights and float32 activations. fbgemm's kernel blocks
  6 rows, so the 8 rows of a 4-stem step stream every weight twice; this one applies each weight
  block to all rows while it sits in cache, and computes every output with the same sequence of
  FMAs whatever the batch, so a stem's logits do not depend on its batch mates.
* `decode_attention`: one new position attending over the KV cache prefix, reading the cache at
  close to memory bandwidth (PyTorch's SDPA for a single query reads it at about half that).

The library is compiled ahead of time against the installed torch by
`python -m stemgen_runner.fastpath.native.build` (hack/install-python.sh, Dockerfile.runner). Its
file name carries a hash of the sources, torch version and flags, so a stale build is never
loaded. Without it (not built, not x86-64 with AVX2) `status()` says why and the fast loop uses
fbgemm and SDPA instead (weights.py, decoder.py).
"""

from __future__ import annotations

import functools
import hashlib
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SOURCES = ("linear_f16.cpp", "decode_attention.cpp")
COMPILE_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-mavx2", "-mfma", "-mf16c")
REQUIRED_CPU_FLAGS = ("avx2", "fma", "f16c")
COLUMNS_PER_BLOCK = 16
"""Output columns per packed weight block (linear_f16.cpp's kColumns)."""
HEAD_DIM = 64
"""The only head width decode_attention implements (every MusicGen size uses it)."""


def library_path() -> Path:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((Path(__file__).parent / name).read_bytes())
    digest.update(" ".join((torch.__version__, *COMPILE_FLAGS)).encode())
    return Path(__file__).parent / f"_stemgen_native-{digest.hexdigest()[:16]}.so"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def unsupported_reason() -> str | None:
    """Why this machine cannot run the kernels at all, or None."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"CPU architecture {platform.machine()} (the kernels are x86-64 AVX2)"
    missing = [flag for flag in REQUIRED_CPU_FLAGS if flag not in _cpu_flags()]
    if missing:
        return f"CPU lacks {', '.join(missing)}"
    return None


@dataclass(frozen=True)
class NativeStatus:
    available: bool
    reason: str
    """What was loaded, or why nothing was."""


@functools.cache
def status() -> NativeStatus:
    """Loads the library once per process (registering torch.ops.stemgen.*)."""
    reason = unsupported_reason()
    if reason is not None:
        return NativeStatus(False, reason)
    path = library_path()
    if not path.exists():
        return NativeStatus(False, f"{path.name} not built (python -m stemgen_runner.fastpath.native.build)")
    torch.ops.load_library(str(path))
    return NativeStatus(True, f"native AVX2 kernels ({path.name})")


def available() -> bool:
    return status().available


def pack_f16(weight: torch.Tensor) -> torch.Tensor:
    """[N, K] weights -> [ceil(N/16), K, 16] float16, the layout linear_f16 streams (zero-padded columns).

    Rounds to float16 first, so the temporaries are half-size (a float32 copy per matrix, on every
    packing thread, showed up as 0.8 GB of peak RSS for musicgen-small)."""
    rows, features = weight.shape
    half = weight.detach().to(torch.float16)
    padded = -(-rows // COLUMNS_PER_BLOCK) * COLUMNS_PER_BLOCK
    if padded != rows:
        half = torch.cat([half, half.new_zeros((padded - rows, features))])
    blocks = half.view(padded // COLUMNS_PER_BLOCK, COLUMNS_PER_BLOCK, features)
    return blocks.transpose(1, 2).contiguous()


def pad_bias(bias: torch.Tensor, padded: int) -> torch.Tensor:
    full = torch.zeros(padded, dtype=torch.float32)
    full[:bias.shape[0]] = bias.detach().float()
    return full


def _ops() -> Any:
    loaded = status()
    if not loaded.available:
        raise RuntimeError(f"native kernels unavailable: {loaded.reason}")
    return torch.ops.stemgen


def linear_f16(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, out_features: int) -> torch.Tensor:
    """x [..., K] float32 @ pack_f16(W [N, K]) -> [..., out_features] float32 (+ pad_bias(b) when given)."""
    return _ops().linear_f16(x, packed, bias, out_features)


def decode_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float) -> torch.Tensor:
    """query [B, H, 1, 64], keys/values [B, H, T, 64] (positions contiguous) -> [B, H, 1, 64]."""
    return _ops().decode_attention(query, keys, values, scale)
