"""Which audiocraft LMs the fast decoding loop can run, decided before any work starts.

The loop re-implements only the per-step transformer call, for the architecture MusicGen's
text-to-music checkpoints use (pre-norm layers, sinusoidal positions, causal self-attention,
cross-attention on text). Anything else (melody/chroma conditioning, prepend or sum fusing,
rotary embeddings, limited past context) is reported here so the caller falls back to plain
audiocraft instead of silently computing something different.
"""

from __future__ import annotations

from typing import Any


class FastPathUnsupported(RuntimeError):
    """The model uses a feature the fast loop does not implement; use plain audiocraft."""


def unsupported_reasons(lm: Any) -> list[str]:
    """Empty when `lm` (an audiocraft LMModel) can be run by the fast loop."""
    from audiocraft.modules import transformer as audiocraft_transformer

    reasons: list[str] = []
    fuser = lm.fuser
    for method in ("sum", "prepend", "input_interpolate"):
        if fuser.fuse2cond.get(method):
            reasons.append(f"conditions fused by {method!r} ({fuser.fuse2cond[method]})")
    for name in lm.condition_provider.conditioners:
        if name not in fuser.fuse2cond.get("cross", []):
            reasons.append(f"condition {name!r} is not cross-attended")
    if lm.condition_provider.wav_conditions or lm.condition_provider.joint_embed_conditions:
        reasons.append("waveform / joint-embedding conditioning (melody, style)")
    transformer = lm.transformer
    if transformer.positional_embedding != "sin":
        reasons.append(f"positional embedding {transformer.positional_embedding!r}")
    if transformer.checkpointing != "none":
        reasons.append("activation checkpointing")
    if audiocraft_transformer._efficient_attention_backend != "torch":
        reasons.append("xformers attention backend (set_efficient_attention_backend('torch'))")
    for index, layer in enumerate(transformer.layers):
        attention = layer.self_attn
        where = f"layer {index}"
        if not layer.norm_first:
            reasons.append(f"{where}: post-norm layer")
        if not attention.custom or not attention.memory_efficient:
            reasons.append(f"{where}: attention is not audiocraft's memory-efficient (SDPA) implementation")
        if not attention.causal or attention.past_context is not None:
            reasons.append(f"{where}: self-attention not causal over the full past")
        if attention.kv_repeat != 1 or attention.qk_layer_norm or attention.rope is not None:
            reasons.append(f"{where}: kv_repeat / qk_layer_norm / rope self-attention")
        if layer.cross_attention is None:
            reasons.append(f"{where}: no cross-attention")
        elif not layer.cross_attention.custom or not layer.cross_attention.memory_efficient:
            reasons.append(f"{where}: cross-attention is not the memory-efficient implementation")
        if not isinstance(layer.norm1, type(layer.norm2)):
            reasons.append(f"{where}: unusual norms")
        if len(reasons) > 8:
            break
    return sorted(set(reasons))


def check_supported(lm: Any) -> None:
    reasons = unsupported_reasons(lm)
    if reasons:
        raise FastPathUnsupported("fast decoding loop does not support this model: " + "; ".join(reasons))
