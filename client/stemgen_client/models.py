"""Typed, read-only views of a StemGeneration object as the API server returns it.

The raw dict stays available (`raw`) so nothing the operator adds later is lost; the typed
properties cover what callers read every time: phase, progress, outputs, reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stemgen_api import contract as c


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Output:
    """One generated stem in blob storage (an item of `status.outputs`)."""

    stem: str
    url: str | None = None
    container: str | None = None
    blob_name: str | None = None
    format: str | None = None
    seconds: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    bytes: int | None = None
    sha256: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Output:
        return cls(
            stem=str(data.get("stem", "")),
            url=data.get("url"),
            container=data.get("container"),
            blob_name=data.get("blobName"),
            format=data.get("format"),
            seconds=data.get("seconds"),
            sample_rate=data.get("sampleRate"),
            channels=data.get("channels"),
            bytes=data.get("bytes"),
            sha256=data.get("sha256"),
        )

    @property
    def filename(self) -> str:
        """Local file name for a download: the blob's own base name, or `<stem>.<format>`."""
        if self.blob_name:
            return self.blob_name.rsplit("/", 1)[-1]
        return f"{self.stem}.{self.format or c.AudioFormat.WAV.value}"


@dataclass(frozen=True)
class Progress:
    stage: str | None = None
    percent: int | None = None


@dataclass(frozen=True)
class StemGeneration:
    """A StemGeneration as last read from the API server."""

    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> StemGeneration:
        return cls(raw=obj)

    @property
    def metadata(self) -> dict[str, Any]:
        return self.raw.get("metadata") or {}

    @property
    def spec(self) -> dict[str, Any]:
        return self.raw.get("spec") or {}

    @property
    def status(self) -> dict[str, Any]:
        return self.raw.get("status") or {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))

    @property
    def uid(self) -> str | None:
        return self.metadata.get("uid")

    @property
    def resource_version(self) -> str | None:
        return self.metadata.get("resourceVersion")

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.metadata.get("labels") or {})

    @property
    def created(self) -> datetime | None:
        return _parse_time(self.metadata.get("creationTimestamp"))

    @property
    def request_id(self) -> str:
        """The effective request id: `spec.requestId`, defaulting to the name as the contract says."""
        return str(self.spec.get("requestId") or self.status.get("requestId") or self.name)

    @property
    def stems(self) -> list[str]:
        return list(self.spec.get("stems") or [])

    @property
    def phase(self) -> c.Phase | None:
        try:
            return c.Phase(self.status.get("phase"))
        except ValueError:
            return None

    @property
    def phase_name(self) -> str:
        """The phase for display; a resource the operator has not seen yet shows `Pending`."""
        return self.phase.value if self.phase else c.Phase.PENDING.value

    @property
    def terminal(self) -> bool:
        return self.phase is not None and self.phase.terminal

    @property
    def reason(self) -> str | None:
        return self.status.get("reason")

    @property
    def message(self) -> str | None:
        return self.status.get("message")

    @property
    def progress(self) -> Progress:
        data = self.status.get("progress") or {}
        return Progress(stage=data.get("stage"), percent=data.get("percent"))

    @property
    def progress_text(self) -> str:
        progress = self.progress
        stage = progress.stage or "-"
        return f"{stage} {progress.percent}%" if progress.percent is not None else stage

    @property
    def outputs(self) -> list[Output]:
        return [Output.from_dict(item) for item in self.status.get("outputs") or []]

    @property
    def start_time(self) -> datetime | None:
        return _parse_time(self.status.get("startTime"))

    @property
    def completion_time(self) -> datetime | None:
        return _parse_time(self.status.get("completionTime"))

    @property
    def cancel_requested(self) -> bool:
        return bool(self.spec.get("cancel"))
