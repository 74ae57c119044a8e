"""The LM's matrices in the format the fast loop multiplies with, next to audiocraft's own modules.

Decoding one token reads every weight of the LM once, so on a CPU the step time is set by
bytes of weights, not FLOPs. Only the big matrices change format; layer norms, embeddings,
the sampling and (except for `bfloat16`/GPU `float16`) the residual stream, attention and KV
cache stay float32, the split autocast makes on a GPU. Formats (`MATRIX_FORMATS`):

* `float32`: the tensors ARE audiocraft's parameters (no copy); the loop computes exactly what
  audiocraft computes.
* `float16`: on CPUs, half-precision weights with float32 activations, multiplied by our own
  AVX2 kernel (native/linear_f16.cpp: 8 rows for little more than the price of 2, and batch-
  invariant) or, where it is not built or `kernels="torch"`, by fbgemm's packed GEMM (3x less
  time than MKL float32 for a step's few rows, measured in docs/benchmarks.md; plain `F.linear`
  in float16 converts in software and loses from 8 rows on). On GPUs, dense float16 (what
  audiocraft's own GPU inference computes in).
* `bfloat16`: dense bfloat16 everywhere (kept for comparison: 8x the drift of float16).
* `int8`: CPU only, fbgemm dynamic quantisation: int8 weights with one scale per output
  channel, activations quantised per call (the stated tolerance in precision.py and its test).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.nn import functional as F

from . import native

MATRIX_FORMATS = ("float32", "float16", "bfloat16", "int8")
KERNELS = ("native", "torch")
"""`native`: our AVX2 kernels where built and supported (native/), else torch's; `torch`: torch's only."""


class Linear(Protocol):
    """y = x W^T + b in some storage format; returns the format's compute dtype."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    @property
    def nbytes(self) -> int: ...


def _detach(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    if tensor is None:
        return None
    return tensor.detach() if tensor.dtype == dtype else tensor.detach().to(dtype)


@dataclass
class DenseLinear:
    weight: torch.Tensor
    bias: torch.Tensor | None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.weight, self.bias) if t is not None)


class PackedFloat16Linear:
    """fbgemm's packed float16 weights, float32 in and out (CPU)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        weight = weight.detach().float().contiguous()
        self._packed = torch.ops.quantized.linear_prepack_fp16(weight, None if bias is None else bias.detach().float())
        self.nbytes = weight.numel() * 2 + (0 if bias is None else bias.numel() * 4)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic_fp16(x.float(), self._packed)


class PackedInt8Linear:
    """fbgemm dynamic quantisation (CPU): symmetric int8 weights, one scale per output channel;
    float32 in and out, the input quantised per call over its own range."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        weight = weight.detach().float()
        scales = (weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0).double()
        zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
        quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
        self._packed = torch.ops.quantized.linear_prepack(quantized, None if bias is None else bias.detach().float())
        self.nbytes = weight.numel() + weight.shape[0] * 8 + (0 if bias is None else bias.numel() * 4)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # reduce_range: 7-bit activations, so AVX2's u8 x s8 pair sums cannot saturate.
        return torch.ops.quantized.linear_dynamic(x.float(), self._packed, True)


class NativeFloat16Linear:
    """Float16 weights in native.pack_f16's block layout, float32 in and out (CPU, native kernels)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.out_features = weight.shape[0]
        self._packed = native.pack_f16(weight)
        padded = self._packed.shape[0] * self._packed.shape[2]
        self._bias = None if bias is None else native.pad_bias(bias, padded)
        self.nbytes = self._packed.numel() * 2 + (0 if bias is None else padded * 4)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return native.linear_f16(x.float(), self._packed, self._bias, self.out_features)


@dataclass(frozen=True)
class MatrixFormat:
    name: str
    compute_dtype: torch.dtype
    """dtype of activations, attention and the KV cache."""
    make: Callable[[torch.Tensor, torch.Tensor | None], Linear]
    kernel: str
    """Who multiplies: "stemgen-avx2", "fbgemm" or "torch" (logged by the runner, shown by the benchmark)."""

    @property
    def native(self) -> bool:
        """The decoding step may also use the native attention kernel (decoder.py)."""
        return self.kernel == "stemgen-avx2"


def matrix_format(name: str, device: torch.device, kernels: str = "native") -> MatrixFormat:
    if name not in MATRIX_FORMATS:
        raise ValueError(f"matrix format must be one of {', '.join(MATRIX_FORMATS)}, not {name!r}")
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, not {kernels!r}")
    on_cpu = device.type == "cpu"
    if name == "int8":
        if not on_cpu:
            raise ValueError("the int8 matrix format is CPU-only (fbgemm)")
        return MatrixFormat(name, torch.float32, PackedInt8Linear, "fbgemm")
    if name == "float16" and on_cpu:
        if kernels == "native" and native.available():
            return MatrixFormat(name, torch.float32, NativeFloat16Linear, "stemgen-avx2")
        return MatrixFormat(name, torch.float32, PackedFloat16Linear, "fbgemm")
    dtype = getattr(torch, name)
    return MatrixFormat(name, dtype, lambda weight, bias: DenseLinear(_detach(weight, dtype), _detach(bias, dtype)),
                        "torch")


def _in_proj_parts(module: Any) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(query, key, value) rows of audiocraft's packed in_proj, as it slices them for cross-attention."""
    weight, bias = module.in_proj_weight, module.in_proj_bias
    dim = weight.shape[0] // 3
    return [(weight[i * dim:(i + 1) * dim], None if bias is None else bias[i * dim:(i + 1) * dim]) for i in range(3)]


@dataclass
class SelfAttentionWeights:
    in_proj: Linear
    """q, k, v in one matrix: all three are needed every step."""
    out: Linear

    @classmethod
    def from_module(cls, module: Any, fmt: MatrixFormat) -> SelfAttentionWeights:
        return cls(fmt.make(module.in_proj_weight, module.in_proj_bias),
                   fmt.make(module.out_proj.weight, module.out_proj.bias))

    @property
    def nbytes(self) -> int:
        return self.in_proj.nbytes + self.out.nbytes


@dataclass
class CrossAttentionWeights:
    query: Linear
    key: Linear
    value: Linear
    """key and value see only the text, once per request (conditioning.py)."""
    out: Linear

    @classmethod
    def from_module(cls, module: Any, fmt: MatrixFormat) -> CrossAttentionWeights:
        (query, query_bias), (key, key_bias), (value, value_bias) = _in_proj_parts(module)
        # Work done once per request gains nothing from a lossy format: keep it in the compute dtype.
        once = fmt if fmt.compute_dtype != torch.float32 else matrix_format("float32", key.device)
        return cls(query=fmt.make(query, query_bias), key=once.make(key, key_bias),
                   value=once.make(value, value_bias), out=fmt.make(module.out_proj.weight, module.out_proj.bias))

    @property
    def nbytes(self) -> int:
        return self.query.nbytes + self.key.nbytes + self.value.nbytes + self.out.nbytes


@dataclass
class LayerWeights:
    module: Any
    """audiocraft's StreamingTransformerLayer: norms, layer scales and activation come from it."""
    self_attention: SelfAttentionWeights
    cross_attention: CrossAttentionWeights
    ff1: Linear
    ff2: Linear

    @property
    def activation(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return self.module.activation


@dataclass
class ModelWeights:
    format: MatrixFormat
    layers: list[LayerWeights]
    heads: list[Linear]

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype: activations, attention, KV cache."""
        return self.format.compute_dtype

    @classmethod
    def from_lm(cls, lm: Any, format_name: str, kernels: str = "native") -> ModelWeights:
        device = next(iter(lm.parameters())).device
        fmt = matrix_format(format_name, device, kernels)

        def build(layer: Any) -> LayerWeights:
            return LayerWeights(
                module=layer,
                self_attention=SelfAttentionWeights.from_module(layer.self_attn, fmt),
                cross_attention=CrossAttentionWeights.from_module(layer.cross_attention, fmt),
                ff1=fmt.make(layer.linear1.weight, layer.linear1.bias),
                ff2=fmt.make(layer.linear2.weight, layer.linear2.bias),
            )

        # fbgemm's packing is slow (musicgen-small: 7.4 s for float16 on one core here) and
        # releases the GIL, so every core the pod may use packs a share (3.7 s on two).
        with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
            layers = list(pool.map(build, lm.transformer.layers))
            heads = list(pool.map(lambda linear: fmt.make(linear.weight, linear.bias), lm.linears))
        return cls(format=fmt, layers=layers, heads=heads)

    @property
    def nbytes(self) -> int:
        total = sum(head.nbytes for head in self.heads)
        for layer in self.layers:
            total += layer.self_attention.nbytes + layer.cross_attention.nbytes + layer.ff1.nbytes + layer.ff2.nbytes
        return total
