"""`stemgen download` from Azurite: stems land in a folder only when their sha256 matches status."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from stemgen_api import contract as c
from stemgen_client import StemGenClient
from stemgen_client.download import IntegrityError, StorageAuth, download_outputs
from stemgen_client.exitcodes import CliExit
from tests.integration.cli_runner import clean_env, run_stemgen
from tests.integration.client_helpers import PROGRESSION, patch_status, succeeded

CONTAINER = "stems"


def _upload(azurite, namespace: str, name: str, contents: dict[str, bytes], prefix: str = "runs") -> list[dict]:
    """Play the runner: upload each stem and describe it the way status.outputs does."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.get_container_client(CONTAINER)
    if not container.exists():
        container.create_container()
    outputs = []
    for stem, data in contents.items():
        blob = c.blob_name(prefix, namespace, name, stem, "wav")
        container.upload_blob(blob, data, overwrite=True)
        outputs.append({"stem": stem, "url": f"{azurite.blob_endpoint}/{CONTAINER}/{blob}", "container": CONTAINER,
                        "blobName": blob, "format": "wav", "seconds": 1.0, "sampleRate": 32000, "channels": 1,
                        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return outputs


@pytest.fixture
def finished(control_plane, api_client, namespace: str, azurite):
    """A Succeeded request whose two stems (several MiB, so downloads are chunked) are in Azurite."""
    stemgen = StemGenClient(kubeconfig=control_plane.kubeconfig, namespace=namespace)
    stemgen.create(stems=["drums", "bass"], name="song")
    contents = {"drums": os.urandom(5 * 1024 * 1024 + 17), "bass": b"RIFF" + os.urandom(4096)}
    outputs = _upload(azurite, namespace, "song", contents)
    patch_status(api_client, namespace, "song", succeeded(outputs))
    return stemgen, contents, outputs


def test_download_with_a_connection_string_flag(control_plane, namespace, azurite, finished, tmp_path: Path) -> None:
    _, contents, outputs = finished
    target = tmp_path / "out"
    result = run_stemgen(control_plane.kubeconfig, namespace, "download", "song", "-d", str(target),
                         "--connection-string", azurite.connection_string)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["bass.wav", "drums.wav"]
    for stem, data in contents.items():
        assert (target / f"{stem}.wav").read_bytes() == data
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["drums", "bass"]
    assert outputs[0]["sha256"] in result.stdout
    again = run_stemgen(control_plane.kubeconfig, namespace, "download", "song", "-d", str(target),
                        "--connection-string", azurite.connection_string)
    assert again.returncode == CliExit.ERROR and "--overwrite" in again.stderr


def test_download_reads_the_connection_string_from_the_environment(control_plane, namespace, azurite, finished,
                                                                   tmp_path: Path) -> None:
    _, contents, _ = finished
    result = run_stemgen(control_plane.kubeconfig, namespace, "download", "song", "-d", str(tmp_path), "-s", "bass",
                         env=clean_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string))
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["bass.wav"]
    assert (tmp_path / "bass.wav").read_bytes() == contents["bass"]


def test_a_checksum_mismatch_keeps_no_file(control_plane, api_client, namespace, azurite, finished,
                                           tmp_path: Path) -> None:
    _, _, outputs = finished
    tampered = [dict(outputs[0], sha256=hashlib.sha256(b"something else").hexdigest()), outputs[1]]
    patch_status(api_client, namespace, "song", {"outputs": tampered})
    result = run_stemgen(control_plane.kubeconfig, namespace, "download", "song", "-d", str(tmp_path),
                         "--connection-string", azurite.connection_string)
    assert result.returncode == CliExit.INTEGRITY
    assert "stem 'drums'" in result.stderr and "does not match" in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the bad file nor its .part remains


def test_a_missing_blob_is_not_found(control_plane, namespace, azurite, finished, tmp_path: Path) -> None:
    _, _, outputs = finished
    BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        CONTAINER, outputs[1]["blobName"]).delete_blob()
    result = run_stemgen(control_plane.kubeconfig, namespace, "download", "song", "-d", str(tmp_path),
                         "--connection-string", azurite.connection_string, "-s", "bass")
    assert result.returncode == CliExit.NOT_FOUND and "bass" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_download_of_an_unfinished_request_exits_9(control_plane, api_client, namespace, azurite,
                                                   tmp_path: Path) -> None:
    StemGenClient(kubeconfig=control_plane.kubeconfig, namespace=namespace).create(stems=["drums"], name="busy")
    patch_status(api_client, namespace, "busy", PROGRESSION[3])
    result = run_stemgen(control_plane.kubeconfig, namespace, "download", "busy", "-d", str(tmp_path),
                         "--connection-string", azurite.connection_string)
    assert result.returncode == CliExit.NOT_READY and "busy is Running" in result.stderr


def test_library_download_verifies_and_reports_each_file(namespace, azurite, finished, tmp_path: Path) -> None:
    stemgen, contents, outputs = finished
    resource = stemgen.get("song")
    seen = []
    files = download_outputs(resource, tmp_path, StorageAuth(connection_string=azurite.connection_string),
                             on_file=seen.append)
    assert [f.stem for f in files] == [f.stem for f in seen] == ["drums", "bass"]
    assert [f.sha256 for f in files] == [o["sha256"] for o in outputs]
    assert files[0].bytes == len(contents["drums"])
    wrong = resource.raw | {"status": resource.status | {"outputs": [dict(outputs[1], sha256="0" * 64)]}}
    with pytest.raises(IntegrityError):
        download_outputs(type(resource).from_dict(wrong), tmp_path / "again",
                         StorageAuth(connection_string=azurite.connection_string))
