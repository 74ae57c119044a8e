"""`stemgen`: submit, inspect, wait for, cancel, download and read logs of StemGenerations.

kubectl-style global flags (`--kubeconfig`, `--context`, `-n`). Every failure maps to one exit
code from `exitcodes.CliExit`, so scripts can tell Failed from Cancelled from a timeout.
Shell completion: `stemgen completion bash` (or zsh/fish) prints the script.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from rich.console import Console

from stemgen_api import contract as c
from stemgen_api.validation import SpecError

from .client import StemGenClient, outputs_or_raise
from .config import current_namespace
from .display import WaitDisplay, output_table, request_table
from .download import IntegrityError, StorageAuth, download_outputs
from .errors import NotFound, NotReady, RequestCancelled, RequestConflict, RequestFailed, StemGenError, WaitTimeout
from .exitcodes import CliExit
from .models import StemGeneration
from .spec import build_manifest, build_spec, split_manifest

COMPLETE_VAR = "_STEMGEN_COMPLETE"


def _fail(code: CliExit, message: str) -> click.exceptions.Exit:
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(int(code))


def _api_message(error: ApiException) -> str:
    """The API server's own message (it names the field for schema/CEL rejections)."""
    try:
        return str(json.loads(error.body).get("message") or error.reason)
    except (TypeError, ValueError, AttributeError):
        return f"HTTP {error.status} {error.reason}"


def _exit_for(error: BaseException) -> click.exceptions.Exit | None:
    if isinstance(error, SpecError):
        return _fail(CliExit.USAGE, "\n  ".join(["invalid spec:", *map(str, error.errors)]))
    if isinstance(error, RequestFailed):
        return _fail(CliExit.FAILED, str(error))
    if isinstance(error, RequestCancelled):
        return _fail(CliExit.CANCELLED, str(error))
    if isinstance(error, WaitTimeout):
        return _fail(CliExit.TIMEOUT, str(error))
    if isinstance(error, NotFound):
        return _fail(CliExit.NOT_FOUND, str(error))
    if isinstance(error, RequestConflict):
        return _fail(CliExit.CONFLICT, str(error))
    if isinstance(error, IntegrityError):
        return _fail(CliExit.INTEGRITY, str(error))
    if isinstance(error, NotReady):
        return _fail(CliExit.NOT_READY, str(error))
    if isinstance(error, ApiException):
        if error.status == 404:
            return _fail(CliExit.NOT_FOUND, _api_message(error))
        if error.status == 422:
            return _fail(CliExit.USAGE, _api_message(error))
        return _fail(CliExit.ERROR, _api_message(error))
    if isinstance(error, (StemGenError, ConfigException, OSError)):
        return _fail(CliExit.ERROR, str(error) or type(error).__name__)
    return None


class StemgenGroup(click.Group):
    """Turns the client's exceptions into one error line and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as error:
            mapped = _exit_for(error)
            if mapped is None:
                raise
            if ctx.obj and ctx.obj.verbose:
                logging.getLogger(__name__).exception("command failed")
            raise mapped from error


class Settings:
    """Global flags, and the client built from them on first use (so `--help` and shell
    completion never need a reachable cluster)."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None, verbose: bool):
        self.kubeconfig = kubeconfig
        self.context = context
        self.namespace_flag = namespace
        self.verbose = verbose
        self._client: StemGenClient | None = None

    @property
    def client(self) -> StemGenClient:
        if self._client is None:
            self._client = StemGenClient(kubeconfig=self.kubeconfig, context=self.context,
                                         namespace=self.namespace_flag)
        return self._client

    @property
    def namespace(self) -> str:
        return self.client.namespace


pass_settings = click.make_pass_decorator(Settings)


def _complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Resource names for shell completion; silent (no names) when the cluster is unreachable."""
    try:
        root = ctx.find_root().params
        client = StemGenClient(kubeconfig=root.get("kubeconfig"), context=root.get("context"),
                               namespace=root.get("namespace"))
        return [item.name for item in client.list() if item.name.startswith(incomplete)]
    except Exception:
        return []


def _stdout_console() -> Console:
    """Tables for people on a terminal; for pipes, one unwrapped line per row so `awk`/`grep` work."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 1000
    return console


def _print_resources(resources: list[StemGeneration], output: str) -> None:
    if output == "name":
        for resource in resources:
            click.echo(f"{c.SINGULAR}.{c.GROUP}/{resource.name}")
    elif output in ("json", "yaml"):
        # One object as itself, several as a kubectl-style List.
        payload = resources[0].raw if len(resources) == 1 else {"apiVersion": "v1", "kind": "List",
                                                               "items": [r.raw for r in resources]}
        if output == "json":
            click.echo(json.dumps(payload, indent=2))
        else:
            click.echo(yaml.safe_dump(payload, sort_keys=False), nl=False)
    else:
        if not resources:
            click.echo("No resources found.", err=True)
            return
        _stdout_console().print(request_table(resources, wide=output == "wide"))


def _wait_and_report(settings: Settings, name: str, timeout: float | None, quiet: bool, live: bool | None,
                     namespace: str | None = None) -> None:
    with WaitDisplay(sys.stderr, live=live, quiet=quiet) as display:
        resource = settings.client.wait_until_done(name, namespace or settings.namespace, timeout=timeout,
                                                   on_update=display)
    if resource.phase is c.Phase.SUCCEEDED:
        click.echo(f"{resource.namespace}/{resource.name} Succeeded")
        if resource.outputs:
            _stdout_console().print(output_table(resource.outputs))
        return
    outputs_or_raise(resource)  # Failed/Cancelled raise, and become exit codes 3/4


OUTPUT_FORMATS = click.Choice(["table", "wide", "name", "yaml", "json"])
timeout_option = click.option("--timeout", type=click.FloatRange(min=0), default=None,
                              help="Give up after this many seconds (exit 5). Default: wait forever.")
live_option = click.option("--live/--plain", "live", default=None,
                           help="Force the live progress bar or plain lines (default: bar on a terminal).")


@click.group(cls=StemgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
              help="Path to the kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).")
@click.option("--context", default=None, help="Kubeconfig context to use.")
@click.option("-n", "--namespace", default=None, help="Namespace (default: the context's, or 'default').")
@click.option("-v", "--verbose", is_flag=True, help="Log API calls and retries to stderr.")
@click.version_option(package_name="stemgen", prog_name="stemgen")
@click.pass_context
def cli(ctx: click.Context, kubeconfig: str | None, context: str | None, namespace: str | None,
        verbose: bool) -> None:
    """Generate music stems on Kubernetes: submit StemGeneration requests and follow them.

    \b
    Exit codes: 0 ok, 1 error, 2 usage/invalid spec, 3 Failed, 4 Cancelled, 5 timeout,
    6 not found, 7 name conflict, 8 checksum mismatch, 9 not ready (download, logs).
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Settings(kubeconfig, context, namespace, verbose)


def _spec_from_flags(**flags: Any) -> dict[str, Any]:
    """Only the flags the user gave, shaped like the spec (nested groups included)."""
    nested = {
        "generation": {"seed": flags.pop("seed"), "temperature": flags.pop("temperature"),
                       "topK": flags.pop("top_k"), "topP": flags.pop("top_p"), "cfgCoef": flags.pop("cfg_coef")},
        "output": {"container": flags.pop("container"), "prefix": flags.pop("prefix"),
                   "format": flags.pop("audio_format")},
    }
    callback_url = flags.pop("callback_url")
    secret_name = flags.pop("callback_secret")
    secret_key = flags.pop("callback_secret_key")
    stems = [s.strip() for value in flags.pop("stems") for s in value.split(",") if s.strip()]
    spec: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    if stems:
        spec["stems"] = stems
    for group, values in nested.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            spec[group] = given
    if callback_url or secret_name:
        spec["callback"] = {"url": callback_url}
        if secret_name:
            spec["callback"]["secretRef"] = {"name": secret_name, **({"key": secret_key} if secret_key else {})}
    return spec


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@cli.command()
@click.option("-f", "--filename", type=click.File("r"), default=None,
              help="YAML file with a StemGeneration (or just its spec); '-' reads stdin. Flags override it.")
@click.option("--name", default=None, help="Resource name (default: derived from --request-id, else generated).")
@click.option("-s", "--stem", "stems", multiple=True, help="Stem to generate; repeat or comma-separate.")
@click.option("--request-id", default=None, help="Your id for the request; resubmitting it returns the existing one.")
@click.option("--audio-file-id", default=None)
@click.option("--prompt", default=None)
@click.option("--style", default=None)
@click.option("--bpm", type=int, default=None)
@click.option("--key", default=None, help="e.g. 'E minor', 'F#', 'Bb major'.")
@click.option("--duration", "duration_seconds", type=float, default=None, help="Seconds per stem.")
@click.option("--model", default=None)
@click.option("--device", type=click.Choice([d.value for d in c.Device]), default=None)
@click.option("--priority", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--temperature", type=float, default=None)
@click.option("--top-k", type=int, default=None)
@click.option("--top-p", type=float, default=None)
@click.option("--cfg-coef", type=float, default=None)
@click.option("--container", default=None, help="Blob container for the stems.")
@click.option("--prefix", default=None, help="Blob name prefix.")
@click.option("--format", "audio_format", type=click.Choice([f.value for f in c.AudioFormat]), default=None)
@click.option("--callback-url", default=None)
@click.option("--callback-secret", default=None, help="Secret (same namespace) holding the signing secret.")
@click.option("--callback-secret-key", default=None, help="Key in that Secret (default 'secret').")
@click.option("--timeout-seconds", type=int, default=None, help="Run deadline of the Job.")
@click.option("--retries", type=int, default=None)
@click.option("--ttl", "ttl_seconds_after_finished", type=int, default=None,
              help="Delete the request this many seconds after it finished.")
@click.option("--queue", "queue_name", default=None, help="Kueue LocalQueue name.")
@click.option("--dry-run", is_flag=True, help="Validate and print the manifest; create nothing.")
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="name", help="How to print the created request.")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the request to finish (exit code tells how).")
@timeout_option
@live_option
@pass_settings
def submit(settings: Settings, filename: Any, name: str | None, dry_run: bool, output: str, wait_: bool,
           timeout: float | None, live: bool | None, **flags: Any) -> None:
    """Create a StemGeneration from flags and/or a YAML file.

    \b
    stemgen submit -s drums -s bass --prompt "dusty breakbeat" --bpm 92 --key "E minor" --wait
    stemgen submit -f request.yaml --request-id order-1234
    """
    metadata: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    if filename is not None:
        document = yaml.safe_load(filename)
        if not isinstance(document, dict):
            raise click.UsageError(f"{filename.name}: expected a YAML mapping")
        metadata, spec = split_manifest(document)
    spec = build_spec(_merge(spec, _spec_from_flags(**flags)))
    name = name or metadata.get("name")
    namespace = settings.namespace_flag or metadata.get("namespace")
    if dry_run:
        namespace = namespace or current_namespace(settings.kubeconfig, settings.context)
        manifest = build_manifest(spec, namespace, name, metadata.get("labels"),
                                  metadata.get("annotations"))
        if output == "json":
            click.echo(json.dumps(manifest, indent=2))
        else:
            click.echo(yaml.safe_dump(manifest, sort_keys=False), nl=False)
        return
    resource, created = settings.client.create_or_get(
        spec, name=name, namespace=namespace or settings.namespace, labels=metadata.get("labels"),
        annotations=metadata.get("annotations"))
    if output == "name":
        click.echo(f"{c.SINGULAR}.{c.GROUP}/{resource.name} {'created' if created else 'unchanged (exists)'}")
    else:
        _print_resources([resource], output)
    if wait_:
        _wait_and_report(settings, resource.name, timeout, quiet=False, live=live, namespace=resource.namespace)


def _list(settings: Settings, names: tuple[str, ...], output: str, selector: str | None, phase: str | None,
          all_namespaces: bool) -> None:
    client = settings.client
    if names:
        resources = [client.get(name, settings.namespace) for name in names]
    else:
        resources = client.list(settings.namespace, phase=phase, labels=selector, all_namespaces=all_namespaces)
    if output in ("table", "wide") and all_namespaces:
        output = "wide"
    _print_resources(resources, output)


list_options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("-o", "--output", type=OUTPUT_FORMATS, default="table"),
    click.option("-l", "--selector", default=None, help="Label selector, e.g. team=audio."),
    click.option("--phase", type=click.Choice([p.value for p in c.Phase]), default=None),
    click.option("-A", "--all-namespaces", is_flag=True),
]


def _with_list_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(list_options):
        func = option(func)
    return func


@cli.command()
@click.argument("names", nargs=-1, shell_complete=_complete_names)
@_with_list_options
@pass_settings
def get(settings: Settings, names: tuple[str, ...], output: str, selector: str | None, phase: str | None,
        all_namespaces: bool) -> None:
    """Show requests (all in the namespace, or the named ones) as a table, YAML or JSON."""
    _list(settings, names, output, selector, phase, all_namespaces)


@cli.command("ls")
@_with_list_options
@pass_settings
def list_command(settings: Settings, output: str, selector: str | None, phase: str | None,
                 all_namespaces: bool) -> None:
    """List requests, filtered by label selector and/or phase."""
    _list(settings, (), output, selector, phase, all_namespaces)


@cli.command()
@click.argument("name", shell_complete=_complete_names)
@timeout_option
@live_option
@click.option("-q", "--quiet", is_flag=True, help="No progress; only the exit code and the result.")
@pass_settings
def wait(settings: Settings, name: str, timeout: float | None, live: bool | None, quiet: bool) -> None:
    """Follow a request until it ends, showing stage, percent and elapsed time.

    Exits 0 on Succeeded, 3 on Failed, 4 on Cancelled, 5 on timeout.
    """
    _wait_and_report(settings, name, timeout, quiet=quiet, live=live)


@cli.command()
@click.argument("name", shell_complete=_complete_names)
@click.option("--wait", "wait_", is_flag=True, help="Wait until the request has ended.")
@timeout_option
@pass_settings
def cancel(settings: Settings, name: str, wait_: bool, timeout: float | None) -> None:
    """Stop a request (sets spec.cancel); the operator stops its Job and reports Cancelled."""
    resource = settings.client.cancel(name, settings.namespace)
    if resource.terminal:
        click.echo(f"{resource.namespace}/{name} already {resource.phase_name}")
        return
    click.echo(f"{c.SINGULAR}.{c.GROUP}/{name} cancel requested")
    if wait_:
        final = settings.client.wait_until_done(name, settings.namespace, timeout=timeout)
        click.echo(f"{final.namespace}/{name} {final.phase_name}")


@cli.command()
@click.argument("name", shell_complete=_complete_names)
@pass_settings
def delete(settings: Settings, name: str) -> None:
    """Delete a request (a running one is stopped and reported Cancelled)."""
    settings.client.delete(name, settings.namespace)
    click.echo(f"{c.SINGULAR}.{c.GROUP}/{name} deleted")


@cli.command()
@click.argument("name", shell_complete=_complete_names)
@click.option("-d", "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write the stems to (default: ./<name>).")
@click.option("--connection-string", envvar=c.ENV_STORAGE_CONNECTION_STRING, show_envvar=True, default=None,
              help="Azure Storage connection string.")
@click.option("--account-url", envvar=c.ENV_STORAGE_ACCOUNT_URL, show_envvar=True, default=None,
              help="Storage account URL, used with DefaultAzureCredential (az login, managed identity).")
@click.option("-s", "--stem", "stems", multiple=True, help="Only this stem (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace existing files.")
@click.option("--no-verify", is_flag=True, help="Keep files even without a matching sha256 (not recommended).")
@pass_settings
def download(settings: Settings, name: str, directory: Path | None, connection_string: str | None,
             account_url: str | None, stems: tuple[str, ...], overwrite: bool, no_verify: bool) -> None:
    """Download a Succeeded request's stems, checking each file's sha256 against its status."""
    resource = settings.client.get(name, settings.namespace)
    auth = StorageAuth.from_env(connection_string, account_url)
    target = directory or Path(name)
    files = download_outputs(resource, target, auth, verify=not no_verify, overwrite=overwrite,
                             stems=list(stems) or None,
                             on_file=lambda f: click.echo(f"{f.stem}\t{f.path}\t{f.bytes} bytes\tsha256 {f.sha256}"))
    click.echo(f"downloaded {len(files)} stem(s) to {target}", err=True)


@cli.command()
@click.argument("name", shell_complete=_complete_names)
@click.option("-f", "--follow", is_flag=True, help="Stream until the pod ends.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("--pod", default=None, help="A specific runner pod (default: the latest attempt).")
@pass_settings
def logs(settings: Settings, name: str, follow: bool, tail: int | None, pod: str | None) -> None:
    """Print the runner pod's log (found by its label stemgen.io/stemgeneration=<name>)."""
    settings.client.get(name, settings.namespace)  # a clear not-found for a wrong name
    for line in settings.client.logs(name, settings.namespace, pod=pod, tail_lines=tail, follow=follow):
        click.echo(line)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(stemgen completion bash)"."""
    from click.shell_completion import get_completion_class

    completion_class = get_completion_class(shell)
    if completion_class is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"unsupported shell {shell}")
    click.echo(completion_class(cli, {}, "stemgen", COMPLETE_VAR).source())


def main() -> None:  # pragma: no cover - `python -m stemgen_client.cli`
    cli(prog_name="stemgen")


if __name__ == "__main__":  # pragma: no cover
    main()
