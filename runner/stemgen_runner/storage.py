"""Azure Blob Storage uploads: one blob per stem, overwritten in place on re-runs.

Retries are the SDK's own ExponentialRetry (it knows which storage errors are transient);
we only bound it, so a blob store that is down fails the run in seconds-to-minutes rather
than the SDK default of several minutes per blob.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContentSettings, ExponentialRetry

from .audio import EncodedAudio
from .errors import StorageFailed
from .settings import RunnerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadedBlob:
    url: str
    container: str
    blob_name: str
    bytes: int
    sha256: str


def blob_metadata(values: dict[str, str | int | None]) -> dict[str, str]:
    """Blob metadata travels as HTTP headers: keys must be identifiers and values ASCII, so
    anything else (an audioFileId with accents) is percent-encoded rather than rejected."""
    metadata = {}
    for key, value in values.items():
        if value is None or value == "":
            continue
        metadata[key] = quote(str(value), safe=" /:._-@+=,")
    return metadata


class BlobStore:
    def __init__(self, service: BlobServiceClient, create_container: bool = True):
        self.service = service
        self.create_container = create_container
        self._ready: set[str] = set()

    @classmethod
    def from_settings(cls, settings: RunnerSettings) -> BlobStore:
        """Connection string when given (Azurite, shared keys); otherwise the account URL with
        DefaultAzureCredential, which picks up AKS workload identity from the pod's env."""
        backoff = max(0.0, settings.storage_initial_backoff)
        retry = ExponentialRetry(initial_backoff=backoff, increment_base=2,  # type: ignore[arg-type]
                                 retry_total=settings.storage_retry_total,
                                 random_jitter_range=min(3.0, backoff))  # type: ignore[arg-type]
        options = {"retry_policy": retry, "connection_timeout": settings.storage_timeout,
                   "read_timeout": settings.storage_timeout}
        if settings.storage_connection_string:
            service = BlobServiceClient.from_connection_string(settings.storage_connection_string, **options)
        elif settings.storage_account_url:
            from azure.identity import DefaultAzureCredential

            service = BlobServiceClient(settings.storage_account_url, credential=DefaultAzureCredential(), **options)
        else:
            raise StorageFailed(
                "no blob storage configured: set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL",
                permanent=True)
        return cls(service, create_container=settings.create_container)

    def ensure_container(self, container: str) -> None:
        if container in self._ready or not self.create_container:
            return
        try:
            self.service.create_container(container)
            log.info("created blob container %s", container)
        except ResourceExistsError:
            pass
        except AzureError as error:
            raise StorageFailed(f"cannot create blob container {container!r}: {_short(error)}") from error
        self._ready.add(container)

    def upload(self, container: str, blob_name: str, audio: EncodedAudio, metadata: dict[str, str]) -> UploadedBlob:
        """Overwrites: a retried pod writes the same blob names, never duplicates."""
        self.ensure_container(container)
        client = self.service.get_blob_client(container, blob_name)
        try:
            client.upload_blob(audio.data, overwrite=True, metadata=metadata,
                               content_settings=ContentSettings(content_type=audio.content_type))
        except AzureError as error:
            raise StorageFailed(f"upload of {container}/{blob_name} failed: {_short(error)}") from error
        return UploadedBlob(url=client.url, container=container, blob_name=blob_name, bytes=len(audio.data),
                            sha256=audio.sha256)

    def ping(self) -> None:
        """One cheap authenticated call, for `stemgen-runner check`."""
        try:
            next(iter(self.service.list_containers(results_per_page=1)), None)
        except AzureError as error:
            raise StorageFailed(f"blob storage unreachable: {_short(error)}") from error


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
