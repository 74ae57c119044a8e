"""What the runner asks MusicGen for, decided from the spec alone."""

from __future__ import annotations

import pytest

from stemgen_api.validation import require_valid
from stemgen_runner.plan import (
    VOCALS_WARNING,
    build_plan,
    describe_stem,
    extend_stride_seconds,
    stem_seed,
    warnings_for,
)


def _spec(**overrides):
    return require_valid({"stems": ["drums", "bass"], "style": "funk", "bpm": 96, "key": "E minor",
                          "prompt": "warm analog groove", "durationSeconds": 8, **overrides})


def test_description_names_stem_first_then_style_tempo_key_prompt() -> None:
    text = describe_stem("drums", style="funk", bpm=96, key="E minor", prompt="warm analog groove")
    assert text.startswith("solo drum kit")
    assert text.index("funk") < text.index("96 bpm") < text.index("E minor") < text.index("warm analog groove")


def test_description_omits_missing_parts_and_handles_unknown_stems() -> None:
    assert describe_stem("sub-bass") == "solo sub bass part, sub bass only"
    assert "bpm" not in describe_stem("piano", bpm=None)
    assert "key" not in describe_stem("piano", key=None)


def test_plan_has_one_description_and_seed_per_stem_in_order() -> None:
    plan = build_plan(_spec(generation={"seed": 42}))
    assert plan.stems == ("drums", "bass")
    assert len(plan.descriptions) == 2 and "drum" in plan.descriptions[0] and "bass" in plan.descriptions[1]
    assert plan.seed == 42
    assert plan.stem_seeds == (stem_seed(42, "drums"), stem_seed(42, "bass"))
    assert plan.stem_seeds[0] != plan.stem_seeds[1]
    assert plan.duration_seconds == 8.0


def test_plan_is_deterministic_for_a_seed_and_draws_one_without() -> None:
    assert build_plan(_spec(generation={"seed": 7})) == build_plan(_spec(generation={"seed": 7}))
    assert build_plan(_spec(), random_seed=123).seed == 123
    assert 0 <= build_plan(_spec()).seed < 2**32


def test_sampling_params_come_from_spec_generation_with_contract_defaults() -> None:
    plan = build_plan(_spec(generation={"temperature": 0.8, "topK": 100, "topP": 0.9, "cfgCoef": 5.0}))
    assert (plan.sampling.temperature, plan.sampling.top_k, plan.sampling.top_p, plan.sampling.cfg_coef) == \
        (0.8, 100, 0.9, 5.0)
    defaults = build_plan(_spec()).sampling
    assert (defaults.temperature, defaults.top_k, defaults.top_p, defaults.cfg_coef) == (1.0, 250, 0.0, 3.0)


@pytest.mark.parametrize(("stems", "duration", "expected"), [
    (["drums"], 10, 0),
    (["vocals"], 10, 1),
    (["drums"], 45, 1),
    (["vocals", "bass"], 45, 2),
])
def test_warnings_for_vocals_and_long_durations(stems, duration, expected) -> None:
    warnings = warnings_for(build_plan(_spec(stems=stems, durationSeconds=duration)), window_seconds=30.0)
    assert len(warnings) == expected
    assert (VOCALS_WARNING in warnings) == ("vocals" in stems)
    if duration > 30:
        assert any("overlapping 30 s windows" in warning for warning in warnings)


def test_extend_stride_matches_audiocraft_default_for_its_window() -> None:
    assert extend_stride_seconds(30.0) == 18.0
    assert extend_stride_seconds(1.0) < 1.0
