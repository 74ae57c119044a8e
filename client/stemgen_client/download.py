"""Fetching a finished request's stems from Azure Blob Storage, verified against status.

The runner records each blob's sha256 in `status.outputs`; a download is only kept when the
bytes match, so a half-written or replaced blob is never mistaken for the result.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stemgen_api import contract as c

from .errors import NotFound, NotReady, StemGenError
from .models import Output, StemGeneration

log = logging.getLogger(__name__)

CHUNK = 4 * 1024 * 1024


class IntegrityError(StemGenError):
    """A blob's content does not match the sha256 in status.outputs."""


@dataclass(frozen=True)
class DownloadedFile:
    stem: str
    path: Path
    bytes: int
    sha256: str


@dataclass(frozen=True)
class StorageAuth:
    """How to reach blob storage: a connection string, or an account URL (or the blob's own URL)
    with `DefaultAzureCredential` (workload identity, managed identity, `az login`)."""

    connection_string: str | None = None
    account_url: str | None = None

    @classmethod
    def from_env(cls, connection_string: str | None = None, account_url: str | None = None) -> StorageAuth:
        return cls(connection_string or os.environ.get(c.ENV_STORAGE_CONNECTION_STRING) or None,
                   account_url or os.environ.get(c.ENV_STORAGE_ACCOUNT_URL) or None)


def blob_client(output: Output, auth: StorageAuth) -> Any:
    """An azure `BlobClient` for one output. Imported lazily: the client extra is optional."""
    from azure.storage.blob import BlobClient, BlobServiceClient

    if auth.connection_string:
        if not (output.container and output.blob_name):
            raise StemGenError(f"output {output.stem!r} has no container/blobName in status")
        service = BlobServiceClient.from_connection_string(auth.connection_string)
        return service.get_blob_client(output.container, output.blob_name)
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    if auth.account_url and output.container and output.blob_name:
        return BlobServiceClient(auth.account_url, credential=credential).get_blob_client(
            output.container, output.blob_name)
    if output.url:
        return BlobClient.from_blob_url(output.url, credential=credential)
    raise StemGenError(f"output {output.stem!r} has no url; pass a connection string or an account URL")


def check_downloadable(resource: StemGeneration) -> list[Output]:
    if resource.phase is not c.Phase.SUCCEEDED:
        raise NotReady(f"{resource.namespace}/{resource.name} is {resource.phase_name}"
                       + (f" ({resource.reason})" if resource.reason else "") + "; only Succeeded requests have stems")
    if not resource.outputs:
        raise NotReady(f"{resource.namespace}/{resource.name} succeeded but lists no outputs")
    return resource.outputs


def download_output(output: Output, destination: Path, auth: StorageAuth, *, verify: bool = True,
                    overwrite: bool = False, client_factory: Callable[[Output, StorageAuth], Any] = blob_client
                    ) -> DownloadedFile:
    """Stream one blob to `destination/<file>` through a `.part` file, hashing as it goes."""
    from azure.core.exceptions import ResourceNotFoundError

    if verify and not output.sha256:
        raise IntegrityError(f"output {output.stem!r} has no sha256 in status; use --no-verify to accept it")
    target = destination / output.filename
    if target.exists() and not overwrite:
        raise StemGenError(f"{target} exists; use --overwrite to replace it")
    partial = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        downloader = client_factory(output, auth).download_blob()
        with open(partial, "wb") as handle:
            for chunk in downloader.chunks():
                digest.update(chunk)
                handle.write(chunk)
                size += len(chunk)
    except ResourceNotFoundError as error:
        partial.unlink(missing_ok=True)
        raise NotFound(f"blob for stem {output.stem!r} not found ({output.container}/{output.blob_name})") from error
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if verify and actual != (output.sha256 or "").lower():
        partial.unlink(missing_ok=True)
        raise IntegrityError(f"stem {output.stem!r}: sha256 {actual} does not match status {output.sha256}")
    os.replace(partial, target)
    log.info("downloaded stem=%s path=%s bytes=%d", output.stem, target, size)
    return DownloadedFile(output.stem, target, size, actual)


def download_outputs(resource: StemGeneration, destination: Path, auth: StorageAuth, *, verify: bool = True,
                     overwrite: bool = False, stems: list[str] | None = None,
                     on_file: Callable[[DownloadedFile], None] | None = None) -> list[DownloadedFile]:
    outputs = check_downloadable(resource)
    if stems:
        unknown = sorted(set(stems) - {o.stem for o in outputs})
        if unknown:
            raise NotFound(f"{resource.name} has no output for stem(s) {', '.join(unknown)}")
        outputs = [o for o in outputs if o.stem in stems]
    destination.mkdir(parents=True, exist_ok=True)
    files = []
    for output in outputs:
        downloaded = download_output(output, destination, auth, verify=verify, overwrite=overwrite)
        if on_file:
            on_file(downloaded)
        files.append(downloaded)
    return files
