"""Assertions on uploaded stems shared by the runner's integration tests."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import soundfile as sf
from azure.storage.blob import BlobServiceClient


def download(connection_string: str, output: dict[str, Any]) -> tuple[bytes, Any]:
    blob = BlobServiceClient.from_connection_string(connection_string).get_blob_client(
        output["container"], output["blobName"])
    return blob.download_blob().readall(), blob.get_blob_properties()


def assert_stem_blob(connection_string: str, output: dict[str, Any], *, request_id: str, model: str,
                     duration: float, audio_format: str = "wav", sample_rate: int = 32000) -> np.ndarray:
    """The blob exists with metadata and content type, decodes to the requested length, is audible,
    peaks at or below -1 dBFS, and starts and ends with a fade (exact zeros at both ends)."""
    data, properties = download(connection_string, output)
    assert hashlib.sha256(data).hexdigest() == output["sha256"] == properties.metadata["sha256"]
    assert len(data) == output["bytes"]
    assert properties.content_settings.content_type == f"audio/{audio_format}"
    assert properties.metadata["requestid"] == request_id
    assert properties.metadata["stem"] == output["stem"]
    assert properties.metadata["model"] == model
    assert properties.metadata["seed"].isdigit()

    samples, rate = sf.read(io.BytesIO(data), always_2d=True, dtype="float64")
    assert sf.info(io.BytesIO(data)).format == audio_format.upper()
    assert rate == sample_rate == output["sampleRate"]
    assert samples.shape[0] == round(duration * sample_rate)
    assert output["seconds"] == duration
    mono = samples.mean(axis=1)
    rms = float(np.sqrt(np.mean(mono**2)))
    assert rms > 1e-3, f"stem {output['stem']} is silent (rms {rms})"
    peak = float(np.max(np.abs(samples)))
    assert 20 * np.log10(peak) <= -1.0
    assert samples[0].tolist() == [0.0] * samples.shape[1] and samples[-1].tolist() == [0.0] * samples.shape[1]
    edge = int(0.002 * sample_rate)
    middle = np.abs(mono[len(mono) // 4: 3 * len(mono) // 4]).mean()
    assert np.abs(mono[:edge]).mean() < middle and np.abs(mono[-edge:]).mean() < middle
    return samples
