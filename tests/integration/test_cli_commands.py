"""`stemgen` as a subprocess against the real API server: output and exit codes of every command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from stemgen_api import contract as c
from stemgen_client import StemGenClient
from stemgen_client.exitcodes import CliExit
from stemgen_client.spec import name_for_request
from tests.integration.cli_runner import STEMGEN, clean_env, run_stemgen
from tests.integration.client_helpers import PROGRESSION, cancelled, failed, patch_status


@pytest.fixture
def cli(control_plane, namespace):
    def run(*args: str, **kwargs):
        return run_stemgen(control_plane.kubeconfig, namespace, *args, **kwargs)
    return run


@pytest.fixture
def stemgen(control_plane, namespace) -> StemGenClient:
    return StemGenClient(kubeconfig=control_plane.kubeconfig, namespace=namespace)


def test_submit_from_flags_is_idempotent_by_request_id(cli, stemgen: StemGenClient) -> None:
    args = ("submit", "-s", "drums,bass", "--prompt", "dusty breakbeat", "--bpm", "92", "--key", "E minor",
            "--duration", "8", "--seed", "7", "--request-id", "order-1234")
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    name = name_for_request("order-1234")
    assert first.stdout.strip() == f"stemgeneration.stemgen.io/{name} created"
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"stemgeneration.stemgen.io/{name} unchanged (exists)"
    [resource] = stemgen.list()
    assert resource.name == name and resource.spec["generation"]["seed"] == 7
    changed = cli(*args[:-2], "--bpm", "93", "--request-id", "order-1234")
    assert changed.returncode == CliExit.CONFLICT
    assert "different spec (spec.bpm)" in changed.stderr
    assert resource.spec["stems"] == ["drums", "bass"] and resource.spec["key"] == "E minor"


def test_submit_from_a_file_with_flag_overrides(cli, stemgen: StemGenClient, tmp_path: Path) -> None:
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": c.API_VERSION, "kind": c.KIND,
                                    "metadata": {"name": "from-file", "labels": {"team": "audio"}},
                                    "spec": {"stems": ["piano"], "bpm": 80}}))
    result = cli("submit", "-f", str(path), "--bpm", "84", "-o", "json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["metadata"]["name"] == "from-file" and created["spec"]["bpm"] == 84
    assert stemgen.get("from-file").labels["team"] == "audio"


def test_submit_invalid_spec_exits_2_and_creates_nothing(cli, stemgen: StemGenClient) -> None:
    result = cli("submit", "-s", "drums", "--bpm", "301", "--duration", "0.5", "--container", "a--b")
    assert result.returncode == CliExit.USAGE
    assert "spec.bpm: must be <= 300" in result.stderr and "spec.durationSeconds: must be >= 1" in result.stderr
    assert stemgen.list() == []


def test_get_and_ls_show_tables_and_filter(cli, stemgen: StemGenClient, api_client, namespace: str) -> None:
    stemgen.create(stems=["drums"], name="alpha", labels={"team": "audio"})
    stemgen.create(stems=["bass", "piano"], name="beta")
    patch_status(api_client, namespace, "alpha", PROGRESSION[2])

    table = cli("get")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.strip().splitlines()
    assert header.split() == ["NAME", "PHASE", "STEMS", "PROGRESS", "AGE"]
    assert [r.split()[:4] for r in rows] == [["alpha", "Running", "drums", "30%"],
                                            ["beta", "Pending", "bass,piano", "-"]]

    assert [r.split()[0] for r in cli("ls", "--phase", "Running").stdout.strip().splitlines()[1:]] == ["alpha"]
    assert [r.split()[0] for r in cli("ls", "-l", "team=audio").stdout.strip().splitlines()[1:]] == ["alpha"]
    wide = cli("get", "alpha", "-o", "wide").stdout
    assert "generating" in wide and "REQUEST ID" in wide
    as_json = json.loads(cli("get", "beta", "-o", "json").stdout)
    assert as_json["metadata"]["name"] == "beta" and as_json["spec"]["model"] == c.DEFAULT_MODEL
    names = cli("ls", "-o", "name").stdout.split()
    assert names == ["stemgeneration.stemgen.io/alpha", "stemgeneration.stemgen.io/beta"]
    empty = cli("ls", "--phase", "Failed")
    assert empty.returncode == 0 and empty.stdout == "" and "No resources found" in empty.stderr


def test_not_found_exits_6_on_every_command(cli) -> None:
    for args in (("get", "missing"), ("wait", "missing", "--timeout", "5"), ("cancel", "missing"),
                 ("delete", "missing"), ("download", "missing", "--connection-string", "UseDevelopmentStorage=true"),
                 ("logs", "missing")):
        result = cli(*args)
        assert result.returncode == CliExit.NOT_FOUND, (args, result.stderr)
        assert "missing" in result.stderr and result.stderr.startswith("error:"), (args, result.stderr)


def test_wait_exit_codes_for_failed_cancelled_and_timeout(cli, stemgen: StemGenClient, api_client,
                                                          namespace: str) -> None:
    for name in ("broken", "stopped", "stuck"):
        stemgen.create(stems=["drums"], name=name)
    patch_status(api_client, namespace, "broken", failed(c.FailureReason.MODEL_NOT_FOUND.value, "no such model"))
    patch_status(api_client, namespace, "stopped", cancelled())
    patch_status(api_client, namespace, "stuck", PROGRESSION[3])

    result = cli("wait", "broken", "--plain")
    assert result.returncode == CliExit.FAILED
    assert "ModelNotFound" in result.stderr and "no such model" in result.stderr
    result = cli("wait", "stopped", "--plain")
    assert result.returncode == CliExit.CANCELLED and "cancelled" in result.stderr
    result = cli("wait", "stuck", "--timeout", "2", "--plain")
    assert result.returncode == CliExit.TIMEOUT
    assert "did not finish within 2s" in result.stderr and "generating 70%" in result.stderr


def test_cancel_sets_spec_cancel(cli, stemgen: StemGenClient, api_client, namespace: str) -> None:
    stemgen.create(stems=["drums"], name="long")
    patch_status(api_client, namespace, "long", PROGRESSION[2])
    result = cli("cancel", "long")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stemgeneration.stemgen.io/long cancel requested"
    assert stemgen.get("long").spec["cancel"] is True
    patch_status(api_client, namespace, "long", cancelled())
    again = cli("cancel", "long")
    assert again.returncode == 0 and "already Cancelled" in again.stdout


def test_delete(cli, stemgen: StemGenClient) -> None:
    stemgen.create(stems=["drums"], name="temp")
    result = cli("delete", "temp")
    assert result.returncode == 0 and "temp deleted" in result.stdout
    assert stemgen.list() == []


def test_context_selects_cluster_and_default_namespace(control_plane, namespace: str, tmp_path: Path,
                                                       stemgen: StemGenClient) -> None:
    stemgen.create(stems=["drums"], name="in-context")
    config = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    base = config["contexts"][0]["context"]
    config["contexts"].append({"name": "studio", "context": {**base, "namespace": namespace}})
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    result = run_stemgen(str(path), None, "--context", "studio", "ls", "-o", "name")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["stemgeneration.stemgen.io/in-context"]
    missing = run_stemgen(str(path), None, "--context", "nope", "ls")
    assert missing.returncode == CliExit.ERROR and "nope" in missing.stderr


def test_shell_completion_offers_request_names(control_plane, namespace: str, stemgen: StemGenClient) -> None:
    for name in ("groove-one", "groove-two", "other"):
        stemgen.create(stems=["drums"], name=name)
    words = f"stemgen --kubeconfig {control_plane.kubeconfig} -n {namespace} wait groo"
    result = subprocess.run([str(STEMGEN)], capture_output=True, text=True, timeout=60, env=clean_env(
        _STEMGEN_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["plain,groove-one", "plain,groove-two"]
