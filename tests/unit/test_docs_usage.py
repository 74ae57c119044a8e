"""docs/usage.md and docs/architecture.md stay true to the CLI and the flow they describe."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from stemgen_client.cli import cli
from stemgen_client.exitcodes import DESCRIPTIONS, CliExit

DOCS = Path(__file__).resolve().parents[2] / "docs"
USAGE = (DOCS / "usage.md").read_text()
ARCHITECTURE = (DOCS / "architecture.md").read_text()


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def _cli_lines() -> list[list[str]]:
    """Every `stemgen ...` command in the usage's bash blocks, continuation lines joined."""
    commands = []
    for block in _code_blocks(USAGE, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#", line.split(";")[0])[0]
            words = shlex.split(line.strip()) if line.strip().startswith("stemgen ") else []
            if words:
                commands.append(words[1:])
    return commands


def test_every_exit_code_is_documented_with_its_meaning() -> None:
    for code in CliExit:
        assert f"| {int(code)} | {DESCRIPTIONS[code]} |" in USAGE, code


def test_every_cli_command_is_shown() -> None:
    shown = {words[0] for words in _cli_lines()}
    assert set(cli.commands) - {"completion"} <= shown, set(cli.commands) - shown
    assert "stemgen completion bash" in USAGE


@pytest.mark.parametrize("args", _cli_lines(), ids=lambda a: " ".join(a)[:60])
def test_documented_commands_parse(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each example's options exist and have valid values (parsed, not run)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "request.yaml").write_text(_code_blocks(USAGE, "yaml")[0])
    root = cli.make_context("stemgen", list(args), resilient_parsing=False)
    command = cli.get_command(root, root.protected_args[0] if root.protected_args else root.args[0])
    assert isinstance(command, click.Command)
    rest = (root.protected_args + root.args)[1:]
    command.make_context(command.name, list(rest), parent=root)


def test_the_yaml_example_is_a_valid_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    (tmp_path / "request.yaml").write_text(_code_blocks(USAGE, "yaml")[0])
    result = CliRunner().invoke(cli, ["-n", "music", "submit", "-f", "request.yaml", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "name: minimal-groove" in result.output and "bpm: 96" in result.output


def test_architecture_has_the_flow_diagram() -> None:
    [diagram] = _code_blocks(ARCHITECTURE, "mermaid")
    assert diagram.startswith("flowchart")
    for node in ("StemGeneration", "operator", "Job", "runner", "Blob", "status", "callback"):
        assert node in diagram, node
    # the arrows of the flow, in order: CR → operator → Job → runner pod → blob / status → callback
    for edge in ("cr -->|watch| operator", 'operator -->|"create one Job', "job --> pod", "pod -->|\"upload stems",
                 'pod -->|"status:', 'pod -->|"then: signed callback'):
        assert edge in diagram, edge
