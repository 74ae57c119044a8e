"""`stemgen-runner`: run one request (default), warm the model cache, or check readiness.

The process exit code is the contract with the Job: 0 done, PERMANENT_FAILURE (bad input,
missing model: the podFailurePolicy stops retrying), RETRYABLE_FAILURE (anything a new pod
may get past).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click
from kubernetes.client import CustomObjectsApi

from stemgen_api import contract as c

from . import callback, logs
from .errors import ResourceGone
from .report import StatusReporter
from .run import RequestRun, deliver_callback
from .settings import RunnerSettings

log = logging.getLogger("stemgen_runner")


def run_request(settings: RunnerSettings, api: CustomObjectsApi | None = None) -> c.ExitCode:
    """Everything `stemgen-runner run` does, callable in-process (tests) with an explicit API."""
    if not settings.namespace or not settings.name:
        log.error("%s and %s must name the StemGeneration to run", c.ENV_NAMESPACE, c.ENV_NAME)
        return c.ExitCode.PERMANENT_FAILURE
    logs.bind(namespace=settings.namespace, name=settings.name)
    if api is None:
        from .kube import custom_objects

        api = custom_objects()
    reporter = StatusReporter(api, settings.namespace, settings.name, progress_interval=settings.progress_interval)
    try:
        resource = reporter.read()
    except ResourceGone as error:
        log.error("%s", error)
        return c.ExitCode.PERMANENT_FAILURE
    except Exception:
        log.exception("cannot read the StemGeneration")
        return c.ExitCode.RETRYABLE_FAILURE

    status = resource.get("status") or {}
    spec = resource.get("spec") if isinstance(resource.get("spec"), dict) else {}
    phase = status.get("phase")
    if phase in {p.value for p in c.TERMINAL_PHASES}:
        return resume_terminal(settings, reporter, resource)
    if spec.get("cancel") is True:
        log.info("request is cancelled; nothing to do")
        return c.ExitCode.SUCCESS
    try:
        return RequestRun(settings, reporter, resource).execute()
    except ResourceGone as error:
        log.error("%s", error)
        return c.ExitCode.PERMANENT_FAILURE
    except Exception:  # writing status itself failed: the operator's Job watch is the backstop
        log.exception("could not report the outcome")
        return c.ExitCode.RETRYABLE_FAILURE


def resume_terminal(settings: RunnerSettings, reporter: StatusReporter, resource: dict[str, Any]) -> c.ExitCode:
    """A pod started for a request that already ended (a retry after the final status was written).

    Never regenerate; only finish a callback that the previous pod did not get to send.
    """
    status = resource.get("status") or {}
    spec = resource.get("spec") if isinstance(resource.get("spec"), dict) else {}
    phase = c.Phase(status["phase"])
    log.info("request already %s; not generating again", phase.value)
    state = (status.get("callback") or {}).get("state")
    if phase != c.Phase.CANCELLED and spec.get("callback") and state in (None, c.CallbackState.PENDING.value):
        metadata = resource.get("metadata", {})
        data = callback.callback_data(
            request_id=status.get("requestId") or spec.get("requestId") or metadata.get("name", ""),
            audio_file_id=spec.get("audioFileId"), namespace=metadata.get("namespace", ""),
            name=metadata.get("name", ""), phase=phase, outputs=status.get("outputs") or [],
            warnings=status.get("warnings"), timings=status.get("timings"),
            reason=status.get("reason"), message=status.get("message"), uid=metadata.get("uid", ""),
            stems=list(spec.get("stems") or []), attempts=status.get("attempts"), job_name=status.get("jobName"))
        deliver_callback(settings, reporter, metadata.get("uid", ""), spec.get("callback"), phase, data)
    return c.ExitCode.PERMANENT_FAILURE if phase == c.Phase.FAILED else c.ExitCode.SUCCESS


@click.group(invoke_without_command=True)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Generate music stems for one StemGeneration (default: `run`)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(run_command)


@cli.command("run")
@click.option("--namespace", envvar=c.ENV_NAMESPACE, help="StemGeneration namespace (env STEMGEN_NAMESPACE).")
@click.option("--name", envvar=c.ENV_NAME, help="StemGeneration name (env STEMGEN_NAME).")
def run_command(namespace: str | None = None, name: str | None = None) -> None:
    """Run the request named by STEMGEN_NAMESPACE/STEMGEN_NAME and exit with its exit code."""
    settings = RunnerSettings()
    settings.namespace = namespace or settings.namespace
    settings.name = name or settings.name
    logs.setup(settings.log_format)
    sys.exit(int(run_request(settings)))


@cli.command("warmup")
@click.option("--model", default=c.DEFAULT_MODEL, show_default=True, help="Hub id or checkpoint directory.")
def warmup_command(model: str) -> None:
    """Fill the model cache with everything a load needs, then prove it loads."""
    from .warmup import warmup

    settings = RunnerSettings()
    logs.setup(settings.log_format)
    report, ok = warmup(settings, model)
    click.echo(json.dumps(report, indent=2))
    sys.exit(int(c.ExitCode.SUCCESS if ok else c.ExitCode.PERMANENT_FAILURE))


@cli.command("check")
@click.option("--model", default=c.DEFAULT_MODEL, show_default=True, help="Hub id or checkpoint directory.")
@click.option("--container", default=c.DEFAULT_CONTAINER, show_default=True)
@click.option("--load/--no-load", default=True, show_default=True, help="Actually load the model.")
def check_command(model: str, container: str, load: bool) -> None:
    """Print device, model cache and blob storage readiness as JSON; exit 1 when not ready."""
    from .check import check

    settings = RunnerSettings()
    logs.setup(settings.log_format, level=logging.WARNING)
    report = check(settings, model, container=container, load=load)
    click.echo(json.dumps(report, indent=2))
    sys.exit(0 if report["ready"] else 1)
