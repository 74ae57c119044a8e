"""One request, start to finish, in the order the contract requires.

Running → load → generate (one batch) → post-process/encode → upload → status (outputs,
timings, Succeeded) → callback. Status is always final before the callback goes out, so a
receiver that reacts to the callback by reading the resource never sees a stale phase.

Retryable failures on a pod that is not the request's last attempt leave the phase Running
(with the reason in status) and exit RETRYABLE_FAILURE: the Job starts another pod, and the
terminal Failed phase and failure callback are sent once, by the last attempt, not once per pod.
`status.attempts` is the operator's count of runner pods (it counts a pod once it is ready, so
a runner that reads status early may see one less than its own number). The runner only reads
it: an undercount makes it treat its last attempt as non-final, and then the operator, seeing
the Job give up, writes Failed and sends the failure callback itself. Never the reverse: a
runner never declares a request Failed while the Job would still retry it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from stemgen_api import contract as c
from stemgen_api.validation import SpecError, require_valid
from stemgen_api.webhooks import DeliveryResult, callback_status

from . import audio, callback, logs
from .errors import InvalidSpec, RequestEnded, RunnerError, classify
from .generate import generate_stems
from .model import choose_device, configure_hub, describe_device, load_model, prepare_torch, resolve_model
from .plan import GenerationPlan, build_plan, warnings_for
from .report import StatusReporter, parse_rfc3339, progress, rfc3339
from .settings import RunnerSettings
from .storage import BlobStore, blob_metadata
from .timing import Stopwatch

log = logging.getLogger(__name__)

# Overall percent at the start of each stage; generation gets the lion's share.
PERCENT_LOADING, PERCENT_GENERATING, PERCENT_POST, PERCENT_UPLOADING = 0, 10, 80, 85


def _now() -> datetime:
    return datetime.now(timezone.utc)


def is_final_attempt(spec: dict[str, Any], attempt: int) -> bool:
    """Whether the Job will start no further pod after this one fails (backoffLimit = spec.retries)."""
    retries = spec.get("retries", c.DEFAULT_RETRIES)
    if not isinstance(retries, int) or isinstance(retries, bool):
        return True
    return attempt > retries


def output_entry(stem: str, uploaded: Any, encoded: audio.EncodedAudio) -> dict[str, Any]:
    return {"stem": stem, "url": uploaded.url, "container": uploaded.container, "blobName": uploaded.blob_name,
            "format": encoded.audio_format, "seconds": round(encoded.seconds, 3), "sampleRate": encoded.sample_rate,
            "channels": encoded.channels, "bytes": uploaded.bytes, "sha256": uploaded.sha256}


class RequestRun:
    """The runner's work for one StemGeneration, as read at start."""

    def __init__(self, settings: RunnerSettings, reporter: StatusReporter, resource: dict[str, Any]):
        self.settings = settings
        self.reporter = reporter
        self.resource = resource
        metadata = resource.get("metadata", {})
        self.namespace: str = metadata.get("namespace", reporter.namespace)
        self.name: str = metadata.get("name", reporter.name)
        self.uid: str = metadata.get("uid", "")
        self.raw_spec: Any = resource.get("spec")
        status = resource.get("status") or {}
        counted = status.get("attempts")
        self.attempt = max(1, counted if isinstance(counted, int) else 0)
        self.first_start = status.get("startTime")
        spec = self.raw_spec if isinstance(self.raw_spec, dict) else {}
        request_id = spec.get("requestId")
        self.request_id: str = request_id if isinstance(request_id, str) and request_id else self.name
        self.stopwatch = Stopwatch()
        self.started_at = _now()
        self.plan: GenerationPlan | None = None
        self.warnings: list[str] = []

    # -- the run ---------------------------------------------------------------------------

    def execute(self) -> c.ExitCode:
        logs.bind(requestId=self.request_id)
        try:
            return self._execute()
        except RequestEnded as ended:
            # Cancelled or failed by the operator while we worked: its word (and callback) stands.
            log.warning("stopping: %s", ended)
            return c.ExitCode.SUCCESS

    def _execute(self) -> c.ExitCode:
        try:
            outputs = self._generate_and_upload()
        except RequestEnded:
            raise
        except Exception as error:
            return self._fail(error)
        timings = self._timings()
        message = f"generated {len(outputs)} stem(s) in {timings['totalSeconds']:.1f}s"
        self.reporter.transition(
            {"phase": c.Phase.SUCCEEDED.value, "reason": "Succeeded", "message": message,
             "completionTime": rfc3339(_now()), "progress": progress(c.ProgressStage.DONE, 100),
             "outputs": outputs, "timings": timings, "warnings": self.warnings},
            [(c.ConditionType.RUNNING, False, "Completed", message),
             (c.ConditionType.SUCCEEDED, True, "Succeeded", message),
             (c.ConditionType.READY, True, "Succeeded", message)])
        log.info("request succeeded: %s", message)
        self._send_callback(c.Phase.SUCCEEDED, outputs, timings)
        return c.ExitCode.SUCCESS

    def _generate_and_upload(self) -> list[dict[str, Any]]:
        try:
            spec = require_valid(self.raw_spec)
        except SpecError as error:
            raise InvalidSpec(str(error)) from error
        plan = self.plan = build_plan(spec)
        output = spec["output"]
        store = BlobStore.from_settings(self.settings)
        source = resolve_model(spec["model"], self.settings.model_cache)

        configure_hub(self.settings.model_cache, self.settings.allow_download)
        import torch

        device = choose_device(spec["device"], torch.cuda.is_available(), self.settings.device)
        prepare_torch(device, self.settings.cpu_threads)
        self.reporter.transition(
            {"phase": c.Phase.RUNNING.value, "reason": "Running",
             "message": f"generating {', '.join(plan.stems)} ({plan.duration_seconds:g}s) with {spec['model']}",
             "startTime": self.first_start or rfc3339(self.started_at), "device": describe_device(device),
             "requestId": self.request_id, "progress": progress(c.ProgressStage.LOADING_MODEL, PERCENT_LOADING)},
            [(c.ConditionType.RUNNING, True, "RunnerStarted", f"runner attempt {self.attempt} started")])

        # Fail fast on a blob store that is down before spending minutes of GPU time.
        store.ensure_container(output["container"])
        with self.stopwatch.measure("modelLoadSeconds"):
            model = load_model(source, device, self.settings.cpu_threads, self.settings.model_cache)
        self.warnings = warnings_for(plan, float(model.max_duration))
        self.reporter.patch({"warnings": self.warnings,
                             "progress": progress(c.ProgressStage.GENERATING, PERCENT_GENERATING)})

        span = PERCENT_POST - PERCENT_GENERATING
        with self.stopwatch.measure("generateSeconds"):
            batch = generate_stems(
                model, plan.descriptions, plan.stem_seeds, plan.sampling, plan.duration_seconds,
                on_progress=lambda fraction: self.reporter.progress(
                    c.ProgressStage.GENERATING, PERCENT_GENERATING + int(span * fraction)))

        self.reporter.progress(c.ProgressStage.POST_PROCESSING, PERCENT_POST)
        sample_rate = int(model.sample_rate)
        with self.stopwatch.measure("postProcessSeconds"):
            encoded = [audio.encode(audio.post_process(batch[index].numpy(), sample_rate, plan.duration_seconds,
                                                       self.settings.post_processing()),
                                    sample_rate, output["format"])
                       for index in range(len(plan.stems))]

        self.reporter.progress(c.ProgressStage.UPLOADING, PERCENT_UPLOADING)
        outputs = []
        with self.stopwatch.measure("uploadSeconds"):
            for stem, stem_audio in zip(plan.stems, encoded, strict=True):
                name = c.blob_name(output["prefix"], self.namespace, self.name, stem, output["format"])
                metadata = blob_metadata({
                    "requestid": self.request_id, "audiofileid": spec.get("audioFileId"), "stem": stem,
                    "model": spec["model"], "seed": plan.seed, "sha256": stem_audio.sha256,
                    "namespace": self.namespace, "name": self.name})
                uploaded = store.upload(output["container"], name, stem_audio, metadata)
                outputs.append(output_entry(stem, uploaded, stem_audio))
                log.info("uploaded %s (%d bytes) to %s", stem, uploaded.bytes, uploaded.url)
        return outputs

    def _timings(self) -> dict[str, float]:
        timings = self.stopwatch.timings()
        created = parse_rfc3339(self.resource.get("metadata", {}).get("creationTimestamp"))
        if created is not None:
            timings["queuedSeconds"] = round(max(0.0, (self.started_at - created).total_seconds()), 3)
        return timings

    # -- failure ---------------------------------------------------------------------------

    def _fail(self, error: Exception) -> c.ExitCode:
        reason, code = classify(error)
        message = str(error) or type(error).__name__
        log.error("request failed (%s): %s", reason.value, message, exc_info=not isinstance(error, RunnerError))
        spec = self.raw_spec if isinstance(self.raw_spec, dict) else {}
        if code == c.ExitCode.RETRYABLE_FAILURE and not is_final_attempt(spec, self.attempt):
            retry_message = f"attempt {self.attempt} failed and will be retried: {message}"
            self.reporter.transition(
                {"reason": reason.value, "message": retry_message, "timings": self._timings()},
                [(c.ConditionType.RUNNING, True, "Retrying", retry_message)])
            return code
        self.reporter.transition(
            {"phase": c.Phase.FAILED.value, "reason": reason.value, "message": message,
             "completionTime": rfc3339(_now()), "timings": self._timings(), "warnings": self.warnings,
             "requestId": self.request_id},
            [(c.ConditionType.RUNNING, False, reason.value, message),
             (c.ConditionType.FAILED, True, reason.value, message),
             (c.ConditionType.READY, False, reason.value, message)])
        self._send_callback(c.Phase.FAILED, [], self._timings(), reason=reason.value, message=message)
        return code

    # -- callback --------------------------------------------------------------------------

    def _send_callback(self, phase: c.Phase, outputs: list[dict[str, Any]], timings: dict[str, float],
                       reason: str | None = None, message: str | None = None) -> DeliveryResult | None:
        spec = self.raw_spec if isinstance(self.raw_spec, dict) else {}
        data = callback.callback_data(
            request_id=self.request_id, audio_file_id=spec.get("audioFileId"), namespace=self.namespace,
            name=self.name, phase=phase, outputs=outputs, seed=self.plan.seed if self.plan else None,
            warnings=self.warnings, timings=timings, reason=reason, message=message, uid=self.uid,
            stems=list(spec.get("stems") or []), attempts=self.attempt,
            job_name=(self.resource.get("status") or {}).get("jobName"))
        return deliver_callback(self.settings, self.reporter, self.uid, spec.get("callback"), phase, data)


def deliver_callback(settings: RunnerSettings, reporter: StatusReporter, uid: str, callback_spec: Any,
                     phase: c.Phase, data: dict[str, Any]) -> DeliveryResult | None:
    """Send the callback (if any) and record the outcome; never raises: the phase is already final."""
    try:
        target = callback.resolve_target(callback_spec if isinstance(callback_spec, dict) else None,
                                         settings.callback_secret, settings.callback_allow_private)
    except ValueError as error:  # includes CallbackURLRefused
        log.error("callback not sent: %s", error)
        _record_final(reporter, callback.refused_status(uid, phase, str(error)), False, str(error))
        return None
    if target is None:
        return None
    try:
        result = callback.send(target, uid, phase, data, settings.retry_policy(),
                               record=lambda status: reporter.patch({"callback": status}))
    except Exception as error:  # a bug in delivery must not turn a Succeeded run into a crash
        log.exception("callback delivery crashed")
        _record_final(reporter, callback.refused_status(uid, phase, f"delivery crashed: {error}"), False, str(error))
        return None
    last = result.attempts[-1] if result.attempts else None
    detail = (f"delivered on attempt {len(result.attempts)}" if result.delivered else
              f"not delivered after {len(result.attempts)} attempt(s): {last.error if last else 'no attempt'}")
    log.info("callback %s", detail)
    _record_final(reporter, callback_status(result, callback.SENT_BY), result.delivered, detail)
    return result


def _record_final(reporter: StatusReporter, status: dict[str, Any], delivered: bool, detail: str) -> None:
    try:
        reporter.transition({"callback": status}, [
            (c.ConditionType.CALLBACK_DELIVERED, delivered, "Delivered" if delivered else "DeliveryFailed", detail)])
    except Exception as error:
        log.warning("could not record the callback outcome: %s", error)
