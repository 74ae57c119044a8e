"""The LM's matrices in the dtype the fast loop computes in, next to audiocraft's own modules.

Decoding one token reads every weight of the LM once, so on a CPU the step time is set by
bytes of weights, not FLOPs: half-precision matrices halve it. Only the big matrices change
dtype; layer norms, embeddings, the residual stream and the sampling stay float32, the
same split autocast makes on a GPU (where audiocraft runs MusicGen in float16). In float32
mode the tensors below ARE audiocraft's parameters (no copy), so the loop computes exactly
what audiocraft computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    if tensor is None:
        return None
    return tensor.detach() if tensor.dtype == dtype else tensor.detach().to(dtype)


@dataclass
class AttentionWeights:
    in_weight: torch.Tensor
    in_bias: torch.Tensor | None
    out_weight: torch.Tensor
    out_bias: torch.Tensor | None

    @classmethod
    def from_module(cls, module: Any, dtype: torch.dtype) -> AttentionWeights:
        out_bias = module.out_proj.bias
        return cls(_cast(module.in_proj_weight, dtype), _cast(module.in_proj_bias, dtype),
                   _cast(module.out_proj.weight, dtype), _cast(out_bias, dtype))

    def split(self) -> tuple[tuple[torch.Tensor, torch.Tensor | None], ...]:
        """(query, key, value) projections as audiocraft slices them for cross-attention."""
        dim = self.in_weight.shape[0] // 3
        bias = self.in_bias
        return tuple((self.in_weight[i * dim:(i + 1) * dim], None if bias is None else bias[i * dim:(i + 1) * dim])
                     for i in range(3))


@dataclass
class LayerWeights:
    module: Any
    """audiocraft's StreamingTransformerLayer: norms, layer scales and activation come from it."""
    self_attention: AttentionWeights
    cross_attention: AttentionWeights
    ff1_weight: torch.Tensor
    ff1_bias: torch.Tensor | None
    ff2_weight: torch.Tensor
    ff2_bias: torch.Tensor | None

    @property
    def activation(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return self.module.activation


@dataclass
class ModelWeights:
    dtype: torch.dtype
    layers: list[LayerWeights]
    head_weights: list[torch.Tensor]
    head_biases: list[torch.Tensor | None]

    @classmethod
    def from_lm(cls, lm: Any, dtype: torch.dtype) -> ModelWeights:
        layers = [
            LayerWeights(
                module=layer,
                self_attention=AttentionWeights.from_module(layer.self_attn, dtype),
                cross_attention=AttentionWeights.from_module(layer.cross_attention, dtype),
                ff1_weight=_cast(layer.linear1.weight, dtype), ff1_bias=_cast(layer.linear1.bias, dtype),
                ff2_weight=_cast(layer.linear2.weight, dtype), ff2_bias=_cast(layer.linear2.bias, dtype),
            )
            for layer in lm.transformer.layers
        ]
        return cls(dtype=dtype, layers=layers,
                   head_weights=[_cast(linear.weight, dtype) for linear in lm.linears],
                   head_biases=[_cast(linear.bias, dtype) for linear in lm.linears])

    @property
    def nbytes(self) -> int:
        tensors: list[torch.Tensor | None] = [*self.head_weights, *self.head_biases]
        for layer in self.layers:
            for attention in (layer.self_attention, layer.cross_attention):
                tensors += [attention.in_weight, attention.in_bias, attention.out_weight, attention.out_bias]
            tensors += [layer.ff1_weight, layer.ff1_bias, layer.ff2_weight, layer.ff2_bias]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)
