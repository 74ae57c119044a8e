"""What to generate, decided from the spec alone: descriptions, seeds, sampling, warnings.

Pure functions, so the text MusicGen sees for each stem (the biggest lever on what comes out)
is unit-tested without a model, and two runs of the same spec plan exactly the same thing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from stemgen_api import contract as c

# MusicGen is trained on full mixes; naming the instrument and saying "solo"/"only" is what
# steers it towards an isolated part. Unknown stem names get the same phrasing generically.
_STEM_PHRASES: dict[str, str] = {
    "drums": "solo drum kit, drums and percussion only, no melody",
    "bass": "solo bass line, bass guitar only",
    "guitar": "solo guitar part, guitar only",
    "vocals": "solo vocal melody, a cappella voice only",
    "piano": "solo piano part, piano only",
    "synth": "solo synthesizer part, synth only",
    "strings": "string section part, strings only",
    "other": "instrumental accompaniment layer, no drums, no bass",
}

VOCALS_WARNING = (
    "MusicGen cannot produce realistic vocals (see its model card): the 'vocals' stem is a voice-like "
    "texture without intelligible words."
)


@dataclass(frozen=True)
class SamplingParams:
    """audiocraft's `set_generation_params` arguments that come from `spec.generation`."""

    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg_coef: float = 3.0
    use_sampling: bool = True


@dataclass(frozen=True)
class GenerationPlan:
    stems: tuple[str, ...]
    descriptions: tuple[str, ...]
    seed: int
    stem_seeds: tuple[int, ...]
    sampling: SamplingParams
    duration_seconds: float


def stem_phrase(stem: str) -> str:
    return _STEM_PHRASES.get(stem, f"solo {stem.replace('-', ' ')} part, {stem.replace('-', ' ')} only")


def describe_stem(stem: str, *, style: str = "", bpm: int | None = None, key: str | None = None,
                  prompt: str = "") -> str:
    """One MusicGen text description: stem first (it matters most), then style, tempo, key, prompt."""
    parts = [stem_phrase(stem)]
    if style.strip():
        parts.append(style.strip())
    if bpm:
        parts.append(f"{bpm} bpm")
    if key:
        parts.append(f"in the key of {key}")
    text = ", ".join(parts)
    if prompt.strip():
        text = f"{text}. {prompt.strip()}"
    return text


def stem_seed(seed: int, stem: str) -> int:
    """A per-stem seed derived from the request seed, stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}:{stem}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def sampling_params(generation: dict[str, Any]) -> SamplingParams:
    return SamplingParams(
        temperature=float(generation.get("temperature", 1.0)),
        top_k=int(generation.get("topK", 250)),
        top_p=float(generation.get("topP", 0.0)),
        cfg_coef=float(generation.get("cfgCoef", 3.0)),
    )


def build_plan(spec: dict[str, Any], random_seed: int | None = None) -> GenerationPlan:
    """The plan for a validated spec (defaults applied). Without `generation.seed` a random seed is drawn
    once here and reported (blob metadata, callback) so the result can be reproduced."""
    stems = tuple(spec["stems"])
    generation = spec.get("generation") or {}
    seed = generation.get("seed")
    if seed is None:
        seed = random_seed if random_seed is not None else secrets.randbelow(2**32)
    descriptions = tuple(
        describe_stem(stem, style=spec.get("style", ""), bpm=spec.get("bpm"), key=spec.get("key"),
                      prompt=spec.get("prompt", ""))
        for stem in stems)
    return GenerationPlan(
        stems=stems,
        descriptions=descriptions,
        seed=int(seed),
        stem_seeds=tuple(stem_seed(int(seed), stem) for stem in stems),
        sampling=sampling_params(generation),
        duration_seconds=float(spec.get("durationSeconds", c.DEFAULT_DURATION_SECONDS)),
    )


def extend_stride_seconds(window_seconds: float) -> float:
    """How far each extension window advances: audiocraft's 18 s for its 30 s window, scaled
    for other windows, so 40% of every window is context carried over from the previous one."""
    return round(window_seconds * 0.6, 3)


def warnings_for(plan: GenerationPlan, window_seconds: float) -> list[str]:
    """What a listener should know before pressing play."""
    warnings = []
    if "vocals" in plan.stems:
        warnings.append(VOCALS_WARNING)
    if plan.duration_seconds > window_seconds:
        stride = extend_stride_seconds(window_seconds)
        warnings.append(
            f"durationSeconds {plan.duration_seconds:g} exceeds the model's {window_seconds:g} s window: the audio is "
            f"generated in overlapping {window_seconds:g} s windows advancing {stride:g} s at a time, so long-range "
            "structure may drift.")
    return warnings
