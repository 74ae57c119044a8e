"""The CLI's offline paths: flag/file → manifest (--dry-run), invalid input → exit 2 naming the
field, completion scripts, and error → exit code mapping. Cluster paths are integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from kubernetes.client.exceptions import ApiException

from stemgen_api import contract as c
from stemgen_client.cli import _exit_for, cli
from stemgen_client.errors import NotFound, RequestCancelled, RequestFailed, WaitTimeout
from stemgen_client.exitcodes import CliExit
from stemgen_client.models import StemGeneration
from stemgen_client.spec import name_for_request

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u, namespace: studio}}]
current-context: ctx
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return str(path)


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_dry_run_from_flags_prints_the_manifest(kubeconfig: str) -> None:
    result = run("--kubeconfig", kubeconfig, "submit", "--dry-run", "-s", "drums,bass", "-s", "piano",
                 "--bpm", "95", "--key", "F# minor", "--duration", "12", "--seed", "7", "--top-k", "100",
                 "--format", "flac", "--callback-url", "https://api.example/hooks", "--callback-secret", "hook",
                 "--request-id", "order-9")
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.output)
    assert manifest["metadata"]["namespace"] == "studio"  # the context's namespace
    assert manifest["metadata"]["name"] == name_for_request("order-9")
    assert manifest["spec"] == {
        "requestId": "order-9", "bpm": 95, "key": "F# minor", "durationSeconds": 12.0,
        "stems": ["drums", "bass", "piano"], "generation": {"seed": 7, "topK": 100}, "output": {"format": "flac"},
        "callback": {"url": "https://api.example/hooks", "secretRef": {"name": "hook"}}}


def test_dry_run_merges_a_file_with_flags(kubeconfig: str, tmp_path: Path) -> None:
    request = tmp_path / "request.yaml"
    request.write_text(yaml.safe_dump({"apiVersion": c.API_VERSION, "kind": c.KIND,
                                       "metadata": {"name": "from-file", "namespace": "other",
                                                    "labels": {"team": "audio"}},
                                       "spec": {"stems": ["drums"], "bpm": 80, "generation": {"seed": 1}}}))
    result = run("--kubeconfig", kubeconfig, "submit", "--dry-run", "-f", str(request), "--bpm", "81",
                 "--temperature", "0.9", "-o", "json")
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.output)
    assert manifest["metadata"]["name"] == "from-file" and manifest["metadata"]["namespace"] == "other"
    assert manifest["metadata"]["labels"]["team"] == "audio"
    assert manifest["spec"] == {"stems": ["drums"], "bpm": 81, "generation": {"seed": 1, "temperature": 0.9}}


def test_bare_spec_from_stdin(kubeconfig: str) -> None:
    result = run("--kubeconfig", kubeconfig, "-n", "x", "submit", "--dry-run", "-f", "-",
                 input="stems: [vocals]\nprompt: airy\n")
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.output)
    assert manifest["spec"] == {"stems": ["vocals"], "prompt": "airy"}
    assert manifest["metadata"]["namespace"] == "x" and manifest["metadata"]["generateName"] == "sg-"


def test_invalid_spec_exits_2_naming_every_field(kubeconfig: str) -> None:
    result = CliRunner().invoke(cli, ["--kubeconfig", kubeconfig, "submit", "-s", "drums", "-s", "drums",
                                      "--bpm", "400", "--key", "H"])
    assert result.exit_code == CliExit.USAGE
    assert "spec.bpm: must be <= 300" in result.output
    assert "spec.key: must match" in result.output
    assert "spec.stems[1]: duplicate value 'drums'" in result.output


def test_missing_stems_exit_2(kubeconfig: str) -> None:
    result = CliRunner().invoke(cli, ["--kubeconfig", kubeconfig, "submit", "--prompt", "x"])
    assert result.exit_code == CliExit.USAGE and "spec.stems: is required" in result.output


def test_wrong_kind_in_file_exits_2(kubeconfig: str, tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\nspec: {}\n")
    result = CliRunner().invoke(cli, ["--kubeconfig", kubeconfig, "submit", "-f", str(path)])
    assert result.exit_code == CliExit.USAGE and "kind: must be StemGeneration" in result.output


def test_unreachable_cluster_exits_1_after_retries(kubeconfig: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import stemgen_client.client as client_module
    from stemgen_client.retry import RetryPolicy

    monkeypatch.setattr(client_module, "RetryPolicy", lambda: RetryPolicy(attempts=2, initial_delay=0.01))
    result = CliRunner().invoke(cli, ["--kubeconfig", kubeconfig, "get", "x"])
    assert result.exit_code == CliExit.ERROR
    assert "giving up after 2 attempts" in result.output


def test_missing_kubeconfig_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--kubeconfig", str(tmp_path / "nope"), "ls"])
    assert result.exit_code == CliExit.ERROR and result.output.startswith("error:")


def test_unknown_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["submit", "--bogus"])
    assert result.exit_code == CliExit.USAGE


@pytest.mark.parametrize("shell,marker", [("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete")])
def test_completion_scripts(shell: str, marker: str) -> None:
    result = run("completion", shell)
    assert result.exit_code == 0 and marker in result.output and "_STEMGEN_COMPLETE" in result.output


def test_help_documents_exit_codes() -> None:
    result = run("--help")
    assert "3 Failed" in result.output and "4 Cancelled" in result.output and "5 timeout" in result.output


def _ended(phase: c.Phase) -> StemGeneration:
    return StemGeneration.from_dict({"metadata": {"name": "n", "namespace": "ns"}, "spec": {"stems": ["drums"]},
                                     "status": {"phase": phase.value, "reason": "GenerationError"}})


@pytest.mark.parametrize("error,code", [
    (RequestFailed(_ended(c.Phase.FAILED)), CliExit.FAILED),
    (RequestCancelled(_ended(c.Phase.CANCELLED)), CliExit.CANCELLED),
    (WaitTimeout(_ended(c.Phase.FAILED), 3), CliExit.TIMEOUT),
    (NotFound("x"), CliExit.NOT_FOUND),
    (ApiException(status=404), CliExit.NOT_FOUND),
    (ApiException(status=422), CliExit.USAGE),
    (ApiException(status=403), CliExit.ERROR),
])
def test_errors_map_to_documented_exit_codes(error: Exception, code: CliExit) -> None:
    mapped = _exit_for(error)
    assert mapped is not None and mapped.exit_code == code
    assert _exit_for(KeyError("bug")) is None  # programming errors keep their traceback
