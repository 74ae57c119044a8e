"""`stemgen-runner check`: what the replaced worker's /health said, as JSON.

Readiness means a request would get through: the model is in the cache and actually loads
(with the hub off, like a run), and the blob store answers an authenticated call.
"""

from __future__ import annotations

from typing import Any

from .model import configure_hub, describe_device, hub_checkpoint_cached, load_model, model_summary, resolve_model
from .settings import RunnerSettings
from .storage import BlobStore


def device_report() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    return {"type": device, "name": describe_device(device), "cudaAvailable": cuda,
            "gpuCount": torch.cuda.device_count()}


def model_report(settings: RunnerSettings, name: str, device: str, load: bool) -> dict[str, Any]:
    report: dict[str, Any] = {"name": name, "cached": False, "loadable": None}
    try:
        source = resolve_model(name, settings.model_cache)
        report["source"] = "directory" if source.local else "hub-cache"
        report["location"] = source.location
        report["cached"] = source.local or hub_checkpoint_cached(source.location)
        if load and report["cached"]:
            report.update(model_summary(load_model(source, device, settings.cpu_threads, settings.model_cache)))
            report["loadable"] = True
    except Exception as error:
        report["loadable"] = False
        report["error"] = str(error)
    return report


def storage_report(settings: RunnerSettings, container: str) -> dict[str, Any]:
    report: dict[str, Any] = {"configured": bool(settings.storage_connection_string or settings.storage_account_url),
                              "reachable": False, "container": container}
    try:
        store = BlobStore.from_settings(settings)
        store.ping()
        report["reachable"] = True
    except Exception as error:  # a malformed connection string is as unready as an unreachable store
        report["error"] = str(error)
    return report


def check(settings: RunnerSettings, model: str, container: str = "stems", load: bool = True) -> dict[str, Any]:
    configure_hub(settings.model_cache, settings.allow_download)
    device = device_report()
    model_state = model_report(settings, model, settings.device or device["type"], load)
    storage = storage_report(settings, container)
    model_ok = model_state["cached"] and (model_state["loadable"] is not False)
    return {"ready": bool(model_ok and storage["reachable"]), "device": device, "model": model_state,
            "storage": storage}
