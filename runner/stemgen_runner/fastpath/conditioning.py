"""Text conditioning and its cross-attention keys/values, computed once per request and per stem.

Two things audiocraft does per step or per batch are moved here:

* Cross-attention keys/values over the text are a function of the text alone, yet audiocraft's
  attention re-projects them at every decoding step (two d x d matmuls per layer per step, an
  eighth of musicgen-small's per-step weight reads). They are projected once here.
* audiocraft encodes all descriptions of a batch together, padding shorter ones with zero
  vectors that the cross-attention then attends to: a stem's conditioning would depend on its
  batch mates' descriptions. Each stem is encoded on its own, paired with its null condition
  exactly as a single-stem audiocraft call does, and rows with equal text length share one
  attention call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange

from .weights import ModelWeights


@dataclass
class CrossGroup:
    """Rows of the CFG-doubled batch whose texts have the same length, and their keys/values."""

    rows: torch.Tensor | None
    """Row indices into the [conditional..., unconditional...] batch; None means all rows in order."""
    keys: list[torch.Tensor]
    """Per layer, [len(rows), heads, text_length, head_dim] in the compute dtype."""
    values: list[torch.Tensor]


def encode_stem(lm: Any, description: str | None) -> torch.Tensor:
    """[2, text_length, dim]: the stem's cross-attention input and its null (CFG) counterpart."""
    from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout, ConditioningAttributes

    attributes = [ConditioningAttributes(text={"description": description})]
    null_attributes = ClassifierFreeGuidanceDropout(p=1.0)(attributes)
    provider = lm.condition_provider
    condition_tensors = provider(provider.tokenize(attributes + null_attributes))
    device = next(iter(lm.parameters())).device
    placeholder = torch.zeros((2, 1, lm.dim), device=device)
    _, cross = lm.fuser(placeholder, condition_tensors)
    if cross is None:
        raise ValueError("model has no cross-attention conditioning")
    return cross


def _project(weights: ModelWeights, cross: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    keys, values = [], []
    for layer in weights.layers:
        module = layer.module.cross_attention
        key = layer.cross_attention.key(cross)
        value = layer.cross_attention.value(cross)
        if module.qk_layer_norm:
            key = module.k_layer_norm(key.to(cross.dtype)).to(weights.dtype)
        keys.append(rearrange(key, "b t (h d) -> b h t d", h=module.num_heads))
        values.append(rearrange(value, "b t (h d) -> b h t d", h=module.num_heads))
    return keys, values


def build_cross_groups(lm: Any, weights: ModelWeights, descriptions: Sequence[str | None]) -> list[CrossGroup]:
    stems = len(descriptions)
    per_stem = [_project(weights, encode_stem(lm, description)) for description in descriptions]
    lengths = [stem_keys[0].shape[2] for stem_keys, _ in per_stem]
    groups: list[CrossGroup] = []
    for length in sorted(set(lengths)):
        members = [index for index, value in enumerate(lengths) if value == length]
        keys, values = [], []
        for layer in range(len(weights.layers)):
            # conditional rows first, then the matching unconditional rows: the batch order.
            keys.append(torch.cat([per_stem[i][0][layer][0:1] for i in members]
                                  + [per_stem[i][0][layer][1:2] for i in members]))
            values.append(torch.cat([per_stem[i][1][layer][0:1] for i in members]
                                    + [per_stem[i][1][layer][1:2] for i in members]))
        rows = None
        if len(members) != stems:
            rows = torch.tensor(members + [stems + i for i in members], device=keys[0].device)
        groups.append(CrossGroup(rows=rows, keys=keys, values=values))
    return groups
