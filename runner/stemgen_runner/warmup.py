"""`stemgen-runner warmup`: fill the model cache PVC so runs never touch the network.

A MusicGen hub model needs more than its two checkpoint files: the compression checkpoint
points at `facebook/encodec_32khz` and the LM's text conditioner at a T5 encoder, both fetched
by transformers on first load. Rather than keep a list that could drift from audiocraft, the
warmup performs one real load with downloads allowed (so audiocraft fetches exactly what it
needs), then reports what the cache holds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .model import configure_hub, load_model, model_summary, resolve_model, write_fast_copy
from .settings import RunnerSettings

log = logging.getLogger(__name__)


def cached_repos() -> list[dict[str, Any]]:
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache dir yet (a local-only model): nothing to list
        return []
    return [{"repo": repo.repo_id, "type": repo.repo_type, "bytes": repo.size_on_disk} for repo in info.repos]


def warmup(settings: RunnerSettings, model: str) -> tuple[dict[str, Any], bool]:
    configure_hub(settings.model_cache, allow_download=True)
    report: dict[str, Any] = {"model": model}
    try:
        source = resolve_model(model, settings.model_cache)
        started = time.monotonic()
        loaded = load_model(source, settings.device or "cpu", settings.cpu_threads)
        report.update(model_summary(loaded))
        report["loadSeconds"] = round(time.monotonic() - started, 2)
        report["location"] = source.location
        del loaded
        fast = write_fast_copy(source, settings.model_cache)
        if fast is not None:
            started = time.monotonic()
            load_model(source, settings.device or "cpu", settings.cpu_threads, settings.model_cache)
            report["fastCopy"] = str(fast)
            report["fastLoadSeconds"] = round(time.monotonic() - started, 2)
    except Exception as error:
        log.exception("warmup failed")
        report["error"] = str(error)
        return report, False
    report["cache"] = cached_repos()
    return report, True
