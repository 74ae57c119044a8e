"""Post-processing and encoding of generated stems: headroom, fades, exact length, decodable bytes."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import soundfile as sf

from stemgen_runner.audio import (
    PostProcessing,
    apply_fades,
    encode,
    fit_length,
    peak_dbfs,
    post_process,
)

RATE = 32000


def _noise(seconds: float, amplitude: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return amplitude * rng.uniform(-1, 1, size=(channels, int(seconds * RATE)))


@pytest.mark.parametrize("amplitude", [0.01, 0.5, 3.0])
def test_peak_is_normalised_to_headroom_without_clipping(amplitude: float) -> None:
    out = post_process(_noise(1.0, amplitude), RATE, 1.0)
    assert -1.1 < peak_dbfs(out) <= -1.0


def test_peak_stays_under_headroom_after_16_bit_encoding() -> None:
    out = post_process(_noise(1.0, 0.7, channels=2), RATE, 1.0)
    decoded, rate = sf.read(io.BytesIO(encode(out, RATE, "wav").data), always_2d=True)
    assert rate == RATE and decoded.shape == (RATE, 2)
    assert peak_dbfs(decoded) <= -1.0


def test_near_silence_is_not_blown_up_and_silence_stays_silent() -> None:
    quiet = post_process(_noise(1.0, 1e-6), RATE, 1.0)
    assert peak_dbfs(quiet) <= -120 + 40 + 1  # capped at +40 dB of gain
    assert np.all(post_process(np.zeros((1, RATE)), RATE, 1.0) == 0)


def test_nan_and_inf_become_silence_not_noise() -> None:
    samples = _noise(1.0, 0.5)
    samples[0, 1000:2000] = np.nan
    samples[0, 3000] = np.inf
    out = post_process(samples, RATE, 1.0)
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out[0, 1000:2000])) < 0.01  # only the (tiny) DC correction remains
    assert peak_dbfs(out) > -2  # the inf did not squash the rest to silence


def test_output_has_exactly_the_requested_length() -> None:
    assert post_process(_noise(1.03, 0.5), RATE, 1.0).shape == (1, RATE)
    assert post_process(_noise(0.97, 0.5), RATE, 1.0).shape == (1, RATE)
    assert fit_length(np.ones((2, 10)), 12)[:, 10:].sum() == 0


def test_fades_start_and_end_at_zero_and_ramp() -> None:
    settings = PostProcessing(fade_in_ms=10, fade_out_ms=50)
    out = apply_fades(np.ones((1, RATE)), RATE, settings)
    fade_in, fade_out = int(RATE * 0.010), int(RATE * 0.050)
    assert out[0, 0] == 0 and out[0, -1] == 0
    assert np.all(np.diff(out[0, :fade_in]) >= 0) and np.all(np.diff(out[0, -fade_out:]) <= 0)
    assert np.all(out[0, fade_in:-fade_out] == 1)


def test_fades_never_take_more_than_a_quarter_of_a_short_clip() -> None:
    out = apply_fades(np.ones((1, 400)), RATE, PostProcessing(fade_in_ms=100, fade_out_ms=100))
    assert np.all(out[0, 100:300] == 1)


def test_dc_offset_is_removed_before_normalising() -> None:
    samples = _noise(1.0, 0.1) + 0.5
    out = post_process(samples, RATE, 1.0)
    assert abs(out.mean()) < 0.01


@pytest.mark.parametrize(("audio_format", "content_type"), [("wav", "audio/wav"), ("flac", "audio/flac")])
def test_encode_wav_and_flac_round_trip(audio_format: str, content_type: str) -> None:
    samples = post_process(_noise(0.5, 0.5), RATE, 0.5)
    encoded = encode(samples, RATE, audio_format)
    assert encoded.content_type == content_type
    assert encoded.sha256 == hashlib.sha256(encoded.data).hexdigest()
    assert encoded.seconds == 0.5 and encoded.channels == 1
    info = sf.info(io.BytesIO(encoded.data))
    assert info.format == audio_format.upper() and info.samplerate == RATE and info.frames == RATE // 2
    decoded, _ = sf.read(io.BytesIO(encoded.data), always_2d=True)
    assert np.max(np.abs(decoded[:, 0] - samples[0])) < 1e-4


def test_encode_refuses_unknown_format() -> None:
    with pytest.raises(ValueError, match="unsupported audio format"):
        encode(np.zeros((1, 10)), RATE, "mp3")
