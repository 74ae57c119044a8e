"""One decoding step of an audiocraft LM, without audiocraft's streaming machinery.

Per step and layer this does what `StreamingTransformerLayer` does for MusicGen (pre-norm
self-attention, cross-attention, feed-forward), with three differences that change speed and
nothing else: keys/values go into a preallocated cache (kv_cache.py), the text's cross-
attention keys/values are projected once per request (conditioning.py), and the big matrices
may be in a smaller format (weights.py). The op sequence in float32 is audiocraft's own, so the
equivalence test can demand identical tokens. With the native float16 kernels the single-position
self-attention is native.decode_attention too (same math, another summation order).
"""

from __future__ import annotations

from typing import Any

import torch
from audiocraft.modules.transformer import create_sin_embedding
from einops import rearrange
from torch.nn import functional as F

from . import native
from .conditioning import CrossGroup
from .kv_cache import KVCache
from .weights import ModelWeights


class Decoder:
    """Runs the CFG-doubled batch ([conditional rows..., unconditional rows...]) step by step."""

    def __init__(self, lm: Any, weights: ModelWeights, groups: list[CrossGroup], stems: int, length: int) -> None:
        self.lm = lm
        self.weights = weights
        self.groups = groups
        self.stems = stems
        first = lm.transformer.layers[0].self_attn
        self.heads = first.num_heads
        self.head_dim = lm.dim // self.heads
        device = next(iter(lm.parameters())).device
        self.native_attention = weights.format.native and self.head_dim == native.HEAD_DIM
        # The native kernel reads a float16 cache with float32 math: half the bytes, and at 4 stems
        # the cache is the second-largest stream of a step after the weights.
        cache_dtype = torch.float16 if self.native_attention else weights.dtype
        self.cache = KVCache(len(weights.layers), 2 * stems, self.heads, length, self.head_dim, cache_dtype, device)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        lm = self.lm
        embedded = sum(lm.emb[k](tokens[:, k]) for k in range(lm.n_q))
        embedded = torch.cat([embedded, embedded], dim=0)  # CFG: same tokens, two conditionings
        transformer = lm.transformer
        steps, channels = embedded.shape[1], embedded.shape[2]
        positions = torch.arange(steps, device=embedded.device).view(1, -1, 1) + self.cache.filled
        position_embedding = create_sin_embedding(positions, channels, max_period=transformer.max_period,
                                                  dtype=embedded.dtype)
        return embedded + transformer.positional_scale * position_embedding

    def _self_attention(self, index: int, x: torch.Tensor) -> torch.Tensor:
        attention = self.weights.layers[index].self_attention
        packed = rearrange(attention.in_proj(x), "b t (p h d) -> b h p t d", p=3, h=self.heads)
        query, key, value = torch.unbind(packed, dim=2)
        keys, values = self.cache.append(index, key, value)
        if self.native_attention and query.shape[2] == 1:
            out = native.decode_attention(query.contiguous(), keys, values, self.head_dim ** -0.5)
            return attention.out(rearrange(out, "b h t d -> b t (h d)"))
        # audiocraft passes is_causal only when several positions arrive at once (the first
        # call with a prompt); a single new position attends to the whole past.
        out = F.scaled_dot_product_attention(query, keys.to(query.dtype), values.to(query.dtype),
                                             is_causal=query.shape[2] > 1)
        return attention.out(rearrange(out, "b h t d -> b t (h d)")).to(x.dtype)

    def _cross_attention(self, index: int, x: torch.Tensor) -> torch.Tensor:
        layer = self.weights.layers[index]
        module = layer.module.cross_attention
        query = layer.cross_attention.query(x)
        if module.qk_layer_norm:
            query = module.q_layer_norm(query.to(x.dtype)).to(self.weights.dtype)
        query = rearrange(query, "b t (h d) -> b h t d", h=self.heads)
        if len(self.groups) == 1 and self.groups[0].rows is None:
            out = F.scaled_dot_product_attention(query, self.groups[0].keys[index], self.groups[0].values[index])
        else:
            out = torch.empty_like(query)
            for group in self.groups:
                out[group.rows] = F.scaled_dot_product_attention(
                    query[group.rows], group.keys[index], group.values[index])
        return layer.cross_attention.out(rearrange(out, "b h t d -> b t (h d)")).to(x.dtype)

    def _feed_forward(self, index: int, x: torch.Tensor) -> torch.Tensor:
        layer = self.weights.layers[index]
        return layer.ff2(layer.activation(layer.ff1(x))).to(x.dtype)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """[stems, K, S] new tokens -> [2*stems, K, card] float32 logits for the last position."""
        x = self._embed(tokens)
        for index, layer in enumerate(self.weights.layers):
            module = layer.module
            x = x + module.layer_scale_1(self._self_attention(index, module.norm1(x)))
            x = x + module.layer_scale_cross(self._cross_attention(index, module.norm_cross(x)))
            x = x + module.layer_scale_2(self._feed_forward(index, module.norm2(x)))
        self.cache.advance(tokens.shape[-1])
        if self.lm.out_norm is not None:
            x = self.lm.out_norm(x)
        logits = torch.stack([head(x) for head in self.weights.heads], dim=1)
        return logits[:, :, -1].float()
