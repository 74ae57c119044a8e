"""Status building blocks: Kubernetes-style conditions and progress throttling."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from stemgen_api import contract as c
from stemgen_runner.report import ProgressThrottle, progress, rfc3339, set_condition

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_set_condition_adds_and_keeps_others() -> None:
    others = [{"type": "Admitted", "status": "True", "reason": "Admitted", "message": "",
               "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    result = set_condition(others, c.ConditionType.RUNNING, True, "RunnerStarted", "go", T0, 3)
    assert result[0] == others[0]
    assert result[1] == {"type": "Running", "status": "True", "reason": "RunnerStarted", "message": "go",
                         "lastTransitionTime": rfc3339(T0), "observedGeneration": 3}


def test_transition_time_moves_only_when_status_flips() -> None:
    first = set_condition(None, c.ConditionType.RUNNING, True, "A", "a", T0, 1)
    same = set_condition(first, c.ConditionType.RUNNING, True, "B", "b", T0 + timedelta(minutes=1), 1)
    assert same[0]["lastTransitionTime"] == rfc3339(T0) and same[0]["reason"] == "B"
    flipped = set_condition(same, c.ConditionType.RUNNING, False, "Done", "d", T0 + timedelta(minutes=2), 1)
    assert flipped[0]["lastTransitionTime"] == rfc3339(T0 + timedelta(minutes=2))
    assert len(flipped) == 1


def test_progress_is_clamped() -> None:
    assert progress(c.ProgressStage.GENERATING, 140) == {"stage": "generating", "percent": 100}
    assert progress(c.ProgressStage.GENERATING, -3)["percent"] == 0


def test_throttle_allows_at_most_one_update_per_interval_within_a_stage() -> None:
    now = [0.0]
    throttle = ProgressThrottle(1.0, clock=lambda: now[0])
    allowed = []
    for step in range(50):  # 50 updates over 2.5 s
        now[0] = step * 0.05
        allowed.append(throttle.allow(c.ProgressStage.GENERATING, step))
    assert sum(allowed) == 3  # t=0, t=1.0, t=2.0


def test_throttle_lets_stage_changes_through_and_drops_repeats() -> None:
    throttle = ProgressThrottle(1.0, clock=lambda: 0.0)
    assert throttle.allow(c.ProgressStage.GENERATING, 50)
    assert throttle.allow(c.ProgressStage.POST_PROCESSING, 80)
    assert not throttle.allow(c.ProgressStage.POST_PROCESSING, 80)


def test_throttle_never_lets_progress_go_backwards_within_a_stage() -> None:
    throttle = ProgressThrottle(0.0, clock=lambda: 0.0)
    assert throttle.allow(c.ProgressStage.GENERATING, 66)
    assert not throttle.allow(c.ProgressStage.GENERATING, 54)  # second extension window restarts its count
    assert throttle.allow(c.ProgressStage.GENERATING, 70)
    assert throttle.allow(c.ProgressStage.POST_PROCESSING, 0)  # a new stage starts fresh
