"""`make demo` / `python -m stemgen_dev.demo`: the whole system on one machine, start to finish.

It starts a real control plane (etcd, kube-apiserver, controller-manager, scheduler), Azurite,
a callback receiver, the node agent (fake GPU and CPU nodes that run pods as local processes)
and the operator; applies the repository's 4-stem example StemGeneration pointed at the tiny
bundled model; shows progress; downloads the stems to ./out/ and checks their sha256; prints
what the callback receiver got; and tears everything down (or leaves it up with --keep).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import yaml
from kubernetes import config as kube_config
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stemgen_api import contract as c

from .procs import REPO_ROOT, log_tail, start_process, stop_process
from .stack import (
    CALLBACK_SECRET,
    CALLBACK_SECRET_KEY,
    MODEL_CACHE_CLAIM,
    TINY_MODEL,
    OperatorProcess,
    Requests,
    install_tiny_model,
    prepare_namespace,
)

EXAMPLE = REPO_ROOT / "manifests" / "examples" / "gpu-four-stems-callback.yaml"
NAMESPACE = "stemgen-demo"
DEFAULT_WORKDIR = REPO_ROOT / ".stemgen" / "demo"
TINY_NOTICE = ("NOTE: these stems come from the TINY RANDOM-WEIGHT test model bundled by the demo, so they are "
               "noise, not music. The pipeline (scheduling, generation, upload, status, signed callback) is real; "
               "run with --model facebook/musicgen-small once its weights are in the model cache for real audio.")


def demo_request(callback_url: str, model: str, duration: float) -> dict[str, Any]:
    """The repository's example, pointed at the local model, receiver and a short duration."""
    manifest = yaml.safe_load(EXAMPLE.read_text())
    spec = manifest["spec"]
    spec.update({"model": model, "durationSeconds": duration, "device": "gpu", "timeoutSeconds": 600})
    spec["callback"] = {"url": callback_url, "secretRef": {"name": CALLBACK_SECRET, "key": CALLBACK_SECRET_KEY}}
    return manifest


def _progress_text(status: dict[str, Any]) -> tuple[str, int]:
    progress = status.get("progress") or {}
    phase = status.get("phase") or "Pending"
    stage = progress.get("stage") or "-"
    percent = int(progress.get("percent") or 0)
    where = f" on {status['pool']} pool" if status.get("pool") else ""
    return f"{phase}{where} · {stage}", (100 if phase == c.Phase.SUCCEEDED.value else percent)


def outputs_table(status: dict[str, Any], downloaded: dict[str, Path]) -> Table:
    table = Table(title="Stems", show_lines=False)
    for column in ("stem", "seconds", "blob URL", "sha256", "file"):
        table.add_column(column, overflow="fold", no_wrap=column in ("blob URL", "sha256"))
    for output in status.get("outputs") or []:
        table.add_row(output["stem"], f"{output.get('seconds', 0):.2f}", output.get("url", ""),
                      output.get("sha256", ""), str(downloaded.get(output["stem"], "")))
    return table


def callback_summary(received: list[Any]) -> list[str]:
    lines = []
    for callback in received:
        body = callback.json or {}
        data = body.get("data") or {}
        lines.append(f"POST {callback.headers.get('webhook-id', '?')}  type={body.get('type')}  "
                     f"signature={'valid' if callback.verified else 'INVALID'}  answered={callback.status_returned}")
        lines.append(f"     requestId={data.get('requestId')} phase={data.get('phase')} "
                     f"stems={[o.get('stem') for o in data.get('outputs') or []]}")
    return lines


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--out", "out_dir", default="out", type=click.Path(file_okay=False, path_type=Path),
              help="Where the stems are downloaded.")
@click.option("--workdir", default=str(DEFAULT_WORKDIR), type=click.Path(file_okay=False, path_type=Path),
              help="Control plane, volumes and logs of this run.")
@click.option("--model", default=TINY_MODEL,
              help="spec.model: 'tiny' (written by the demo) or a hub id already in the model cache.")
@click.option("--duration", default=2.0, type=float, help="Seconds of audio per stem.")
@click.option("--timeout", default=600.0, type=float, help="Seconds to wait for the request.")
@click.option("--keep", is_flag=True, help="Leave everything running and print how to use kubectl against it.")
def cli(out_dir: Path, workdir: Path, model: str, duration: float, timeout: float, keep: bool) -> None:
    """Run the local end-to-end demo."""
    # Wide enough for full blob URLs and hashes when the output is a log rather than a terminal.
    console = Console() if sys.stdout.isatty() else Console(width=400, soft_wrap=True)
    sys.exit(run_demo(console, out_dir=out_dir, workdir=workdir, model=model, duration=duration, timeout=timeout,
                      keep=keep))


def run_demo(console: Console, *, out_dir: Path, workdir: Path, model: str, duration: float, timeout: float,
             keep: bool) -> int:
    from .azurite import Azurite
    from .cluster import start_control_plane
    from .receiver import CallbackReceiver

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    logs = workdir / "logs"
    volumes = workdir / "volumes"
    with ExitStack() as cleanup:
        step = console.status("starting")
        step.start()
        try:
            step.update("control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler")
            plane = start_control_plane(workdir / "cluster")
            if not keep:
                cleanup.callback(plane.stop)
            console.print(f"[green]✓[/] control plane at {plane.server}")

            step.update("Azurite (blob storage)")
            azurite = Azurite(location=workdir / "azurite").start()
            if not keep:
                cleanup.callback(azurite.stop)
            console.print(f"[green]✓[/] Azurite at {azurite.blob_endpoint}")

            receiver = CallbackReceiver().start()
            cleanup.callback(receiver.stop)
            console.print(f"[green]✓[/] callback receiver at {receiver.url}")

            step.update("node agent: fake GPU and CPU nodes")
            if model == TINY_MODEL:
                install_tiny_model(volumes)
            agent = start_process([
                sys.executable, "-m", "stemgen_dev.node_agent", "--kubeconfig", plane.kubeconfig,
                "--gpu-nodes", "1", "--cpu-nodes", "1", "--volume-root", str(volumes),
                "--work-root", str(workdir / "pods"), "--prefix", "demo",
                # The fake GPU node has no CUDA device; its runner generates on the CPU.
                "--gpu-env", "STEMGEN_DEVICE=cpu",
            ], logs / "node-agent.log", cwd=REPO_ROOT)
            if not keep:
                cleanup.callback(stop_process, agent)
            api_client = kube_config.new_client_from_config(config_file=plane.kubeconfig)
            _wait_for_nodes(api_client, agent, logs / "node-agent.log")
            console.print("[green]✓[/] node agent: nodes demo-gpu-0 (nvidia.com/gpu: 1, tainted sku=gpu) and "
                          "demo-cpu-0 are Ready")

            step.update("namespace, runner RBAC (from manifests/), secrets, model cache PVC")
            prepare_namespace(api_client, NAMESPACE, storage_connection_string=azurite.connection_string,
                              callback_secret=receiver.secret, create_namespace=True)
            operator = OperatorProcess(kubeconfig=plane.kubeconfig, namespaces=[NAMESPACE],
                                       log_path=logs / "operator.log", gpu_limit=1, cpu_limit=1).start()
            if not keep:
                cleanup.callback(operator.stop)
            console.print(f"[green]✓[/] operator watching namespace {NAMESPACE} "
                          f"(model cache claim {MODEL_CACHE_CLAIM} → {volumes / MODEL_CACHE_CLAIM})")
        finally:
            step.stop()

        manifest = demo_request(receiver.url, model, duration)
        name = manifest["metadata"]["name"]
        requests = Requests(api_client, NAMESPACE)
        requests.create(manifest)
        console.print(f"applied {EXAMPLE.relative_to(REPO_ROOT)} as {NAMESPACE}/{name}: stems "
                      f"{', '.join(manifest['spec']['stems'])}, model {model}, {duration:g} s each")

        status = _wait_with_progress(console, requests, name, timeout)
        if status.get("phase") != c.Phase.SUCCEEDED.value:
            console.print(f"[red]✗ {name} ended {status.get('phase')}: {status.get('reason')} "
                          f"{status.get('message')}[/]")
            console.print(f"operator log:\n{log_tail(logs / 'operator.log')}")
            console.print(f"node agent log:\n{log_tail(logs / 'node-agent.log')}")
            return 1

        downloaded = _download(status, out_dir, azurite.connection_string)
        console.print(outputs_table(status, downloaded))
        timings = status.get("timings") or {}
        console.print("timings: " + ", ".join(f"{key} {value:.2f}s" for key, value in timings.items()))
        try:
            received = receiver.wait_for(1, timeout=60)
        except TimeoutError:
            received = []
        console.print("[bold]callback received[/]" if received else "[red]no callback received[/]")
        for line in callback_summary(received):
            console.print(line, markup=False, highlight=False)
        if model == TINY_MODEL:
            console.print(f"[bold yellow]{TINY_NOTICE}[/]")
        if keep:
            _print_keep_instructions(console, plane, workdir, {"node agent": agent.pid,
                                                                "operator": operator.process.pid if operator.process
                                                                else None,
                                                                "azurite": azurite.process.pid if azurite.process
                                                                else None})
        else:
            console.print("tearing down (use --keep to leave it running)")
    return 0


def _wait_for_nodes(api_client: Any, agent: Any, log_path: Path, timeout: float = 90.0) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise RuntimeError(f"the node agent exited ({agent.returncode}):\n{log_tail(log_path)}")
        nodes = core.list_node(label_selector="stemgen.io/node-agent=demo").items
        ready = [n for n in nodes if any(cond.type == "Ready" and cond.status == "True"
                                         for cond in n.status.conditions or [])
                 and not any(t.key.startswith("node.kubernetes.io/") for t in n.spec.taints or [])]
        if len(ready) == 2:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the demo nodes did not become Ready:\n{log_tail(log_path)}")


def _wait_with_progress(console: Console, requests: Requests, name: str, timeout: float) -> dict[str, Any]:
    with Progress(TextColumn("[bold]{task.fields[name]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task("Pending", total=100, name=name)
        seen: list[str] = []

        def show(status: dict[str, Any]) -> None:
            text, percent = _progress_text(status)
            bar.update(task, description=text, completed=percent)
            if text not in seen:
                seen.append(text)
                if not console.is_terminal:  # a log (CI) gets one line per change instead of a redraw
                    console.print(f"  {name}: {text} {percent}%")

        return requests.wait_terminal(name, timeout, on_progress=show)


def _download(status: dict[str, Any], out_dir: Path, connection_string: str) -> dict[str, Path]:
    from stemgen_client.download import StorageAuth, download_outputs
    from stemgen_client.models import StemGeneration

    resource = StemGeneration.from_dict({"metadata": {}, "status": status})
    files = download_outputs(resource, out_dir.resolve(), StorageAuth(connection_string=connection_string),
                             verify=True, overwrite=True)
    return {file.stem: file.path for file in files}


def _print_keep_instructions(console: Console, plane: Any, workdir: Path, pids: dict[str, int | None]) -> None:
    state = workdir / "state.json"
    state.write_text(json.dumps({**plane.state(), "services": pids}, indent=2))
    kubectl = plane.bin_dir / "kubectl"
    console.print("[bold]left running[/] (--keep). Try:")
    console.print(f"  export KUBECONFIG={plane.kubeconfig}")
    console.print(f"  {kubectl} get stemgenerations,jobs,pods,nodes -A")
    console.print(f"  {kubectl} -n {NAMESPACE} get sg -o yaml")
    console.print(f"logs: {workdir / 'logs'}; pod logs: {workdir / 'pods'}; state: {state}")
    console.print("(the callback receiver lived in this process and is gone now)")
    stops = " ".join(f"-{pid}" for pid in pids.values() if pid)
    console.print(f"stop it: kill -TERM -- {stops}; .venv/bin/python -c 'import json; from stemgen_dev.cluster "
                  f"import stop_from_state; stop_from_state(json.load(open(\"{state}\")))'", markup=False,
                  highlight=False)


if __name__ == "__main__":
    cli()
