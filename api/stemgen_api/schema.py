"""The OpenAPI v3 schema of StemGeneration, built from the contract.

The CRD, the runner's re-validation and the docs are all derived from `spec_schema()` and
`status_schema()`, so a bound changed here changes everywhere at once.
"""

from __future__ import annotations

from typing import Any

from . import contract as c

Schema = dict[str, Any]

# Fields the operator may still change after admission (everything else is frozen).
MUTABLE_AFTER_ADMISSION = ("cancel", "ttlSecondsAfterFinished")


def _string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _integer(description: str, minimum: int, maximum: int, **extra: Any) -> Schema:
    return {"type": "integer", "description": description, "minimum": minimum, "maximum": maximum, **extra}


def _number(description: str, minimum: float, maximum: float, **extra: Any) -> Schema:
    return {"type": "number", "description": description, "minimum": minimum, "maximum": maximum, **extra}


def spec_schema() -> Schema:
    """`spec` of a StemGeneration: what the replaced worker's /generate request carried, and more."""
    generation: Schema = {
        "type": "object",
        "description": "Sampling parameters passed to MusicGen.",
        "properties": {
            "seed": _integer("Random seed; each stem's audio depends only on (seed, stem, spec).", 0, 2**32 - 1),
            "temperature": _number("Softmax temperature.", 0, 5, exclusiveMinimum=True, default=1.0),
            "topK": _integer("Sample from the K most likely tokens (0 disables top-k).", 0, 2048, default=250),
            "topP": _number("Nucleus sampling threshold (0 disables top-p, which then wins over top-k).", 0, 1,
                            default=0.0),
            "cfgCoef": _number("Classifier-free guidance coefficient.", 0, 20, default=3.0),
        },
    }
    output: Schema = {
        "type": "object",
        "description": "Where and how the stems are written in Azure Blob Storage.",
        "default": {},
        "properties": {
            "container": _string(
                "Blob container (Azure naming rules: 3-63 lowercase letters, digits and single hyphens).",
                default=c.DEFAULT_CONTAINER, minLength=3, maxLength=63, pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$",
                **{"x-kubernetes-validations": [
                    {"rule": "!self.contains('--')", "message": "must not contain consecutive hyphens"}]}),
            "prefix": _string(
                "Path prefix inside the container; blobs go to <prefix>/<namespace>/<name>/<stem>.<format>.",
                              default="", maxLength=512, pattern=r"^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$"),
            "format": _string("Audio encoding.", enum=[f.value for f in c.AudioFormat],
                              default=c.AudioFormat.WAV.value),
        },
    }
    callback: Schema = {
        "type": "object",
        "description": "Where to send the Standard Webhooks callback when the request ends.",
        "required": ["url"],
        "properties": {
            "url": _string("HTTP(S) URL that receives the signed callback.", maxLength=2048,
                           **{"x-kubernetes-validations": [{
                               "rule": "isURL(self) && url(self).getScheme() in ['http', 'https'] "
                                       "&& url(self).getHostname() != ''",
                               "message": "must be an absolute http:// or https:// URL"}]}),
            "secretRef": {
                "type": "object",
                "description": "Secret (same namespace) holding the webhook signing secret.",
                "required": ["name"],
                "properties": {
                    "name": _string("Secret name.", minLength=1, maxLength=253,
                                    pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
                    "key": _string("Key inside the Secret.", default="secret", minLength=1, maxLength=253,
                                   pattern=r"^[-._a-zA-Z0-9]+$"),
                },
            },
        },
    }
    return {
        "type": "object",
        "description": "What to generate.",
        "required": ["stems"],
        "properties": {
            "requestId": _string("The calling API's id for this request; defaults to metadata.name.",
                                 minLength=1, maxLength=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"),
            "audioFileId": _string("Optional id of the source audio this request belongs to.", maxLength=256),
            "stems": {
                "type": "array",
                "description": f"Stems to generate, 1 to {c.MAX_STEMS} unique names, e.g. {', '.join(c.KNOWN_STEMS)}.",
                "minItems": 1,
                "maxItems": c.MAX_STEMS,
                "x-kubernetes-list-type": "set",
                "items": _string("Stem name.", minLength=1, maxLength=32, pattern=c.STEM_PATTERN),
            },
            "prompt": _string("Free-text description added to every stem's prompt.", default="", maxLength=1000),
            "style": _string("Musical style, e.g. 'lo-fi hip hop'.", default="", maxLength=200),
            "bpm": _integer("Tempo in beats per minute.", 30, 300, default=c.DEFAULT_BPM),
            "key": _string("Musical key, e.g. 'E minor', 'F#', 'Bb major'.", maxLength=16, pattern=c.KEY_PATTERN),
            "durationSeconds": _number(
                f"Length of each stem. Beyond the model's {c.MODEL_WINDOW_SECONDS:g} s window the runner extends "
                "in overlapping windows.", 1, 300, default=c.DEFAULT_DURATION_SECONDS),
            "model": _string("MusicGen model: a hub id (from the cache) or a local directory.",
                             default=c.DEFAULT_MODEL, minLength=1, maxLength=256,
                             pattern=r"^[A-Za-z0-9_./-]+$"),
            "device": _string("Node pool: gpu, cpu, or auto (gpu when a GPU pool is configured).",
                              enum=[d.value for d in c.Device], default=c.Device.AUTO.value),
            "priority": _integer("Higher runs first within a pool; FIFO among equals.", -1000, 1000, default=0),
            "generation": generation,
            "output": output,
            "callback": callback,
            "timeoutSeconds": _integer("Wall-clock limit of the whole run (Job activeDeadlineSeconds).", 30, 86400,
                                       default=c.DEFAULT_TIMEOUT_SECONDS),
            "retries": _integer("How many times a failed runner pod is retried (Job backoffLimit).", 0, 10,
                                default=c.DEFAULT_RETRIES),
            "ttlSecondsAfterFinished": _integer("Delete the request this long after it finished.", 0, 31536000),
            "queueName": _string("Kueue LocalQueue that admits the Job instead of the operator's own queue.",
                                 maxLength=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
            "cancel": {"type": "boolean", "description": "Set to true to stop the request.", "default": False},
        },
    }


def _condition_schema() -> Schema:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": _string("Condition type.", maxLength=64),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _string("CamelCase reason.", maxLength=1024),
            "message": _string("Human-readable detail.", maxLength=32768),
            "lastTransitionTime": _string("When status last changed.", format="date-time"),
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        },
    }


def status_schema() -> Schema:
    """`status`, written by the operator and the runner through the status subresource."""
    number = {"type": "number"}
    integer = {"type": "integer", "format": "int64"}
    timestamp = {"type": "string", "format": "date-time"}
    return {
        "type": "object",
        "description": "Observed state, written by the operator and the runner.",
        "properties": {
            "phase": _string("Lifecycle phase.", enum=[p.value for p in c.Phase]),
            "reason": _string("Why the request is in its phase (CamelCase)."),
            "message": _string("Human-readable detail of the phase."),
            "observedGeneration": integer,
            "conditions": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": _condition_schema(),
            },
            "requestId": _string("Effective request id."),
            "queuePosition": {"type": "integer", "description": "1-based position in its pool's queue."},
            "jobName": _string("The Job that runs this request."),
            "pool": _string("Node pool chosen.", enum=[p.value for p in c.Pool]),
            "device": _string("Device the runner used, e.g. 'cuda:0 (NVIDIA H100)' or 'cpu'."),
            "queuedTime": timestamp,
            "admittedTime": timestamp,
            "startTime": timestamp,
            "completionTime": timestamp,
            "attempts": {"type": "integer", "description": "Runner pods started so far."},
            "progress": {
                "type": "object",
                "properties": {
                    "stage": _string("Current step.", enum=[s.value for s in c.ProgressStage]),
                    "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                },
            },
            "warnings": {"type": "array", "items": {"type": "string"},
                         "description": "Things to know before listening."},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "stem": _string("Stem name."),
                        "url": _string("Blob URL."),
                        "container": _string("Blob container."),
                        "blobName": _string("Blob name inside the container."),
                        "format": _string("Audio encoding.", enum=[f.value for f in c.AudioFormat]),
                        "seconds": number,
                        "sampleRate": {"type": "integer"},
                        "channels": {"type": "integer"},
                        "bytes": integer,
                        "sha256": _string("Hex SHA-256 of the blob content."),
                    },
                },
            },
            "timings": {
                "type": "object",
                "properties": {name: number for name in (
                    "queuedSeconds", "modelLoadSeconds", "generateSeconds", "postProcessSeconds",
                    "uploadSeconds", "totalSeconds")},
            },
            "callback": {
                "type": "object",
                "properties": {
                    "state": _string("Delivery state.", enum=[s.value for s in c.CallbackState]),
                    "webhookId": _string("The webhook-id header, stable across retries."),
                    "eventType": _string("Event type sent."),
                    "attempts": {"type": "integer"},
                    "lastStatusCode": {"type": "integer"},
                    "lastError": _string("Last delivery error."),
                    "lastAttemptTime": timestamp,
                    "deliveredAt": timestamp,
                    "sentBy": _string("Who sent it: runner or operator."),
                },
            },
        },
    }


def _immutability_rule(spec: Schema) -> dict[str, str]:
    """A root-level transition rule: once accepted, only the mutable fields may change.

    It lives at the root because only there can a rule see both `status.phase` and `spec`.
    """
    comparisons = []
    for name in spec["properties"]:
        if name in MUTABLE_AFTER_ADMISSION:
            continue
        comparisons.append(
            f"(has(self.spec.{name}) == has(oldSelf.spec.{name}) && "
            f"(!has(self.spec.{name}) || self.spec.{name} == oldSelf.spec.{name}))")
    accepted = ", ".join(f"'{p.value}'" for p in sorted(c.ACCEPTED_PHASES, key=lambda p: p.value))
    return {
        "rule": f"!has(oldSelf.status) || !has(oldSelf.status.phase) || !(oldSelf.status.phase in [{accepted}]) || "
                f"({' && '.join(comparisons)})",
        "message": "spec is immutable once the request is accepted (only spec.cancel and "
                   "spec.ttlSecondsAfterFinished may change)",
        "fieldPath": ".spec",
        "reason": "FieldValueForbidden",
    }


def resource_schema() -> Schema:
    """The CRD's openAPIV3Schema for the whole object."""
    spec = spec_schema()
    return {
        "type": "object",
        "description": "A request to generate music stems with MusicGen.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status_schema(),
        },
        "x-kubernetes-validations": [_immutability_rule(spec)],
    }
