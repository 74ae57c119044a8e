"""Post-processing and encoding of generated stems.

numpy only (no torch), so the operator-free unit tests exercise exactly what ships. Order
matters: sanitise → exact length → remove DC → normalise → fade. Fading last keeps the first
and last samples at exactly zero, and normalising before fading means the fades can only
lower the peak, never push it past the headroom.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from stemgen_api import contract as c

CONTENT_TYPES = {c.AudioFormat.WAV.value: "audio/wav", c.AudioFormat.FLAC.value: "audio/flac"}


@dataclass(frozen=True)
class PostProcessing:
    peak_dbfs: float = -1.0
    """Target peak. -1 dBFS leaves room for lossy re-encoding downstream (inter-sample peaks)."""
    max_gain_db: float = 40.0
    """Near-silent output is not blown up into amplified noise."""
    fade_in_ms: float = 10.0
    fade_out_ms: float = 50.0


@dataclass(frozen=True)
class EncodedAudio:
    data: bytes
    audio_format: str
    content_type: str
    sample_rate: int
    channels: int
    frames: int
    sha256: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def peak_dbfs(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return float("-inf") if peak == 0.0 else 20.0 * float(np.log10(peak))


def fit_length(samples: np.ndarray, frames: int) -> np.ndarray:
    """Trim or zero-pad `[C, T]` audio to exactly `frames`: the token count rounds the duration."""
    if samples.shape[-1] >= frames:
        return samples[..., :frames]
    pad = np.zeros((*samples.shape[:-1], frames - samples.shape[-1]), dtype=samples.dtype)
    return np.concatenate([samples, pad], axis=-1)


def normalise(samples: np.ndarray, settings: PostProcessing) -> np.ndarray:
    """Peak-normalise to `settings.peak_dbfs`, a hair under it so 16-bit rounding cannot cross it."""
    samples = samples - samples.mean(axis=-1, keepdims=True)
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak == 0.0:
        return samples
    target = db_to_gain(settings.peak_dbfs) * (1.0 - 1e-4)
    gain = min(target / peak, db_to_gain(settings.max_gain_db))
    return samples * gain


def apply_fades(samples: np.ndarray, sample_rate: int, settings: PostProcessing) -> np.ndarray:
    """Raised-cosine fades; each at most a quarter of the clip so short clips keep a body."""
    frames = samples.shape[-1]
    out = samples.copy()
    for ms, at_start in ((settings.fade_in_ms, True), (settings.fade_out_ms, False)):
        length = min(int(sample_rate * ms / 1000.0), frames // 4)
        if length < 2:
            continue
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, length, dtype=np.float64))
        if at_start:
            out[..., :length] *= ramp
        else:
            out[..., frames - length:] *= ramp[::-1]
    return out


def post_process(samples: np.ndarray, sample_rate: int, duration_seconds: float,
                 settings: PostProcessing | None = None) -> np.ndarray:
    """`[C, T]` float audio from the model → `[C, frames]` float64 ready to encode."""
    settings = settings or PostProcessing()
    audio = np.nan_to_num(np.asarray(samples, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if audio.ndim == 1:
        audio = audio[None, :]
    audio = fit_length(audio, round(duration_seconds * sample_rate))
    audio = normalise(audio, settings)
    audio = apply_fades(audio, sample_rate, settings)
    return np.clip(audio, -1.0, 1.0)


def encode(samples: np.ndarray, sample_rate: int, audio_format: str) -> EncodedAudio:
    """16-bit PCM WAV or FLAC bytes (what DAWs and browsers all read) with their SHA-256."""
    if audio_format not in CONTENT_TYPES:
        raise ValueError(f"unsupported audio format {audio_format!r}; expected one of {sorted(CONTENT_TYPES)}")
    buffer = io.BytesIO()
    sf.write(buffer, samples.T, sample_rate, format=audio_format.upper(), subtype="PCM_16")
    data = buffer.getvalue()
    return EncodedAudio(data=data, audio_format=audio_format, content_type=CONTENT_TYPES[audio_format],
                        sample_rate=sample_rate, channels=samples.shape[0], frames=samples.shape[-1],
                        sha256=hashlib.sha256(data).hexdigest())
