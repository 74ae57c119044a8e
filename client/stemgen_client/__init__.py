"""Python client and `stemgen` CLI for StemGeneration resources.

    from stemgen_client import StemGenClient
    stemgen = StemGenClient(namespace="music")            # kubeconfig, or in-cluster in a pod
    request = stemgen.create(stems=["drums", "bass"], prompt="dusty breakbeat", request_id="order-1234")
    outputs = stemgen.wait(request.name, timeout=600)     # raises RequestFailed / RequestCancelled / WaitTimeout
"""

from stemgen_api.validation import FieldError, SpecError

from .client import StemGenClient, outputs_or_raise
from .errors import (
    NotFound,
    NotReady,
    RequestCancelled,
    RequestConflict,
    RequestFailed,
    StemGenError,
    TransientAPIError,
    WaitTimeout,
)
from .models import Output, Progress, StemGeneration
from .retry import RetryPolicy
from .spec import CallbackSpec, GenerationParams, OutputSpec, SecretRef, StemGenerationSpec, name_for_request

__all__ = [
    "CallbackSpec",
    "FieldError",
    "GenerationParams",
    "NotFound",
    "NotReady",
    "Output",
    "OutputSpec",
    "Progress",
    "RequestCancelled",
    "RequestConflict",
    "RequestFailed",
    "RetryPolicy",
    "SecretRef",
    "SpecError",
    "StemGenClient",
    "StemGenError",
    "StemGeneration",
    "StemGenerationSpec",
    "TransientAPIError",
    "WaitTimeout",
    "name_for_request",
    "outputs_or_raise",
]
