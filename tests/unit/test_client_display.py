"""Typed views and the CLI's rendering: rows, ages, plain progress lines, outputs."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

from stemgen_api import contract as c
from stemgen_client.display import (
    WaitDisplay,
    age,
    output_rows,
    progress_line,
    request_table,
    row,
)
from stemgen_client.models import Output, StemGeneration

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=timezone.utc)


def resource(phase: str | None = None, stage: str | None = None, percent: int | None = None,
             reason: str | None = None, outputs: list[dict] | None = None, created: datetime | None = None
             ) -> StemGeneration:
    status: dict = {}
    if phase:
        status["phase"] = phase
    if stage or percent is not None:
        status["progress"] = {k: v for k, v in (("stage", stage), ("percent", percent)) if v is not None}
    if reason:
        status["reason"] = reason
    if outputs:
        status["outputs"] = outputs
    created = created or NOW - timedelta(seconds=90)
    return StemGeneration.from_dict({
        "metadata": {"name": "song", "namespace": "music",
                     "creationTimestamp": created.isoformat().replace("+00:00", "Z")},
        "spec": {"stems": ["drums", "bass"], "requestId": "order-7"},
        "status": status,
    })


def test_age_is_kubectl_compact() -> None:
    assert age(NOW - timedelta(seconds=42), NOW) == "42s"
    assert age(NOW - timedelta(seconds=119), NOW) == "119s"
    assert age(NOW - timedelta(seconds=150), NOW) == "2m"
    assert age(NOW - timedelta(minutes=5, seconds=3), NOW) == "5m"
    assert age(NOW - timedelta(hours=3), NOW) == "3h"
    assert age(NOW - timedelta(days=2, hours=1), NOW) == "2d"
    assert age(None, NOW) == "-"
    assert age(NOW + timedelta(seconds=5), NOW) == "0s"  # clock skew never shows negative


def test_models_read_status() -> None:
    r = resource(c.Phase.FAILED.value, reason=c.FailureReason.OOM_KILLED.value)
    assert r.phase is c.Phase.FAILED and r.terminal and r.reason == "OOMKilled"
    assert r.request_id == "order-7" and r.created == NOW - timedelta(seconds=90)
    fresh = StemGeneration.from_dict({"metadata": {"name": "n"}, "spec": {"stems": ["drums"]}})
    assert fresh.phase is None and fresh.phase_name == "Pending" and not fresh.terminal
    assert fresh.request_id == "n"  # the contract: requestId defaults to metadata.name


def test_output_filename_prefers_the_blob_name() -> None:
    assert Output.from_dict({"stem": "drums", "blobName": "p/music/song/drums.flac"}).filename == "drums.flac"
    assert Output.from_dict({"stem": "bass", "format": "wav"}).filename == "bass.wav"


def test_rows_narrow_and_wide() -> None:
    r = resource(c.Phase.RUNNING.value, stage="generating", percent=40)
    assert row(r, now=NOW) == ("song", "Running", "drums,bass", "40%", "90s")
    assert row(r, wide=True, now=NOW) == ("music", "song", "order-7", "Running", "drums,bass", "generating",
                                          "40%", "-", "-", "90s")
    assert row(resource(), now=NOW)[1:4] == ("Pending", "drums,bass", "-")


def test_request_table_renders_every_resource() -> None:
    out = io.StringIO()
    from rich.console import Console

    Console(file=out, width=200).print(request_table([resource(c.Phase.QUEUED.value)], now=NOW))
    text = out.getvalue()
    assert "NAME" in text and "PHASE" in text and "song" in text and "Queued" in text


def test_output_rows_shorten_the_hash() -> None:
    rows = output_rows([Output.from_dict({"stem": "drums", "seconds": 8.0, "bytes": 1234, "sha256": "ab" * 32,
                                          "url": "http://blob/x"})])
    assert rows == [("drums", "8", "1234", "abababababab", "http://blob/x")]


def test_progress_line_names_phase_stage_percent_elapsed() -> None:
    line = progress_line(resource(c.Phase.RUNNING.value, stage="uploading", percent=90), 12.4)
    assert line == "music/song Running stage=uploading progress=90% elapsed=12s"
    failed = progress_line(resource(c.Phase.FAILED.value, reason="GenerationError"), 3)
    assert failed.endswith("reason=GenerationError")


def test_plain_display_prints_one_line_per_change() -> None:
    out = io.StringIO()
    with WaitDisplay(out, live=False) as display:
        for update in [resource(c.Phase.QUEUED.value), resource(c.Phase.QUEUED.value),
                       resource(c.Phase.RUNNING.value, "generating", 10),
                       resource(c.Phase.RUNNING.value, "generating", 10),
                       resource(c.Phase.RUNNING.value, "generating", 60),
                       resource(c.Phase.SUCCEEDED.value, "done", 100)]:
            display(update)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["Queued", "Running", "Running", "Succeeded"]
    assert "progress=60%" in lines[2] and "stage=done" in lines[3]


def test_live_display_draws_a_bar_with_stage_and_percent() -> None:
    out = io.StringIO()
    with WaitDisplay(out, live=True) as display:
        display(resource(c.Phase.RUNNING.value, "generating", 55))
    text = out.getvalue()
    assert "generating" in text and "55%" in text and "Running" in text


def test_live_elapsed_counts_from_creation() -> None:
    from rich.progress import Progress

    from stemgen_client.display import RequestElapsedColumn, elapsed_text

    assert elapsed_text(3725.9) == "1:02:05"
    progress = Progress()
    created = datetime.now(timezone.utc) - timedelta(minutes=3, seconds=2)
    progress.add_task("x", created=created)
    [task] = progress.tasks
    assert RequestElapsedColumn().render(task).plain in ("0:03:02", "0:03:03")


def test_quiet_display_prints_nothing() -> None:
    out = io.StringIO()
    with WaitDisplay(out, live=False, quiet=True) as display:
        display(resource(c.Phase.RUNNING.value, "generating", 55))
    assert out.getvalue() == ""
