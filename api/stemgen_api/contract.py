"""Names and constants of the StemGeneration API.

Kept free of third-party imports so the operator image, the runner image and the client
can all import it without pulling each other's dependencies.
"""

from __future__ import annotations

import enum
import hashlib
import re
from typing import Final

GROUP: Final = "stemgen.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "StemGeneration"
LIST_KIND: Final = "StemGenerationList"
PLURAL: Final = "stemgenerations"
SINGULAR: Final = "stemgeneration"
SHORT_NAMES: Final = ("stemgen", "sg")
CATEGORIES: Final = ("stemgen",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

DEFAULT_MODEL: Final = "facebook/musicgen-small"
DEFAULT_CONTAINER: Final = "stems"
DEFAULT_BPM: Final = 120
DEFAULT_DURATION_SECONDS: Final = 10.0
DEFAULT_TIMEOUT_SECONDS: Final = 3600
DEFAULT_RETRIES: Final = 2
MAX_STEMS: Final = 8
MODEL_WINDOW_SECONDS: Final = 30.0
"""MusicGen's context covers 30 s; longer requests are generated in overlapping windows."""

KNOWN_STEMS: Final = ("drums", "bass", "guitar", "vocals", "piano", "synth", "strings", "other")
KEY_PATTERN: Final = r"^[A-G](#|b)?( (major|minor))?$"
STEM_PATTERN: Final = r"^[a-z][a-z0-9-]{0,31}$"


class Phase(str, enum.Enum):
    """Where a request is in its life. Terminal phases never change again."""

    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES: Final = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})
ACCEPTED_PHASES: Final = frozenset(set(Phase) - {Phase.PENDING})
"""Phases in which the operator has accepted the request; its spec is then frozen."""


class ConditionType(str, enum.Enum):
    ADMITTED = "Admitted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    READY = "Ready"
    CALLBACK_DELIVERED = "CallbackDelivered"


class Device(str, enum.Enum):
    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"


class Pool(str, enum.Enum):
    GPU = "gpu"
    CPU = "cpu"


class AudioFormat(str, enum.Enum):
    WAV = "wav"
    FLAC = "flac"


class CallbackState(str, enum.Enum):
    PENDING = "Pending"
    DELIVERED = "Delivered"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class ProgressStage(str, enum.Enum):
    QUEUED = "queued"
    STARTING = "starting"
    LOADING_MODEL = "loading-model"
    GENERATING = "generating"
    POST_PROCESSING = "post-processing"
    UPLOADING = "uploading"
    DONE = "done"


class EventType(str, enum.Enum):
    """Callback `type` values (Standard Webhooks' event type)."""

    SUCCEEDED = "stemgeneration.succeeded"
    FAILED = "stemgeneration.failed"
    CANCELLED = "stemgeneration.cancelled"


EVENT_TYPE_BY_PHASE: Final = {
    Phase.SUCCEEDED: EventType.SUCCEEDED,
    Phase.FAILED: EventType.FAILED,
    Phase.CANCELLED: EventType.CANCELLED,
}

# Labels and annotations put on Jobs and Pods so both can be traced back to their request.
LABEL_NAME: Final = f"{GROUP}/stemgeneration"
LABEL_REQUEST_ID: Final = f"{GROUP}/request-id"
LABEL_POOL: Final = f"{GROUP}/pool"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
MANAGED_BY: Final = "stemgen-operator"
PART_OF: Final = "stemgen"
COMPONENT_RUNNER: Final = "runner"
KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
ANNOTATION_UID: Final = f"{GROUP}/stemgeneration-uid"
ANNOTATION_GENERATION: Final = f"{GROUP}/observed-generation"

# Environment the operator sets on the runner container.
ENV_NAMESPACE: Final = "STEMGEN_NAMESPACE"
ENV_NAME: Final = "STEMGEN_NAME"
ENV_STORAGE_CONNECTION_STRING: Final = "AZURE_STORAGE_CONNECTION_STRING"
ENV_STORAGE_ACCOUNT_URL: Final = "AZURE_STORAGE_ACCOUNT_URL"
ENV_CALLBACK_SECRET: Final = "STEMGEN_CALLBACK_SECRET"
ENV_MODEL_CACHE: Final = "STEMGEN_MODEL_CACHE"


class ExitCode(enum.IntEnum):
    """Runner exit codes; the Job's podFailurePolicy stops retrying on PERMANENT_FAILURE."""

    SUCCESS = 0
    RETRYABLE_FAILURE = 75  # EX_TEMPFAIL: try again, the next attempt may succeed
    PERMANENT_FAILURE = 42  # bad input or missing model: retrying cannot help


class FailureReason(str, enum.Enum):
    """Machine-readable `status.reason` values for a Failed request."""

    INVALID_SPEC = "InvalidSpec"
    MODEL_NOT_FOUND = "ModelNotFound"
    GENERATION_ERROR = "GenerationError"
    STORAGE_ERROR = "StorageError"
    OOM_KILLED = "OOMKilled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    POD_FAILED = "PodFailed"
    EVICTED = "Evicted"
    IMAGE_PULL = "ImagePullFailed"
    JOB_DELETED = "JobDeleted"
    CALLBACK_REFUSED = "CallbackURLRefused"
    POOL_UNAVAILABLE = "PoolUnavailable"  # spec.device names a pool this cluster does not have
    INTERNAL = "InternalError"


def blob_name(prefix: str, namespace: str, name: str, stem: str, audio_format: str) -> str:
    """Blob path inside the container: `<prefix>/<namespace>/<name>/<stem>.<format>`."""
    parts = [p.strip("/") for p in (prefix, namespace, name) if p and p.strip("/")]
    return "/".join([*parts, f"{stem}.{audio_format}"])


LABEL_VALUE_MAX: Final = 63
_LABEL_VALUE_RE: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


def request_id_label_value(request_id: str) -> str:
    """The value of `LABEL_REQUEST_ID` for a request id.

    Request ids may be longer than a label value (63) or contain `:`; those are replaced by
    `sha256-<hex>` of the id so every writer (client, operator) puts the same value on the label.
    """
    if len(request_id) <= LABEL_VALUE_MAX and re.match(_LABEL_VALUE_RE, request_id):
        return request_id
    return "sha256-" + hashlib.sha256(request_id.encode()).hexdigest()[:56]
