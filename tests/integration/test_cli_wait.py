"""`stemgen wait` and `submit --wait` on requests whose status the test moves forward.

The status updates go through the real status subresource while the CLI watches; the display
must show each stage and percent as it happens: plain lines without a TTY, a live bar with one.
"""

from __future__ import annotations

import os
import pty
import subprocess
import threading

from stemgen_api import contract as c
from stemgen_client import StemGenClient
from stemgen_client.exitcodes import CliExit
from stemgen_client.spec import name_for_request
from tests.integration.cli_runner import clean_env, run_stemgen, stemgen_command
from tests.integration.client_helpers import PROGRESSION, StatusPlayer, failed, succeeded

OUTPUTS = [{"stem": s, "url": f"http://127.0.0.1:10000/devstoreaccount1/stems/ns/song/{s}.wav",
            "container": "stems", "blobName": f"ns/song/{s}.wav", "format": "wav", "seconds": 8.0,
            "sampleRate": 32000, "channels": 1, "bytes": 512044, "sha256": "ab" * 32} for s in ("drums", "bass")]


def _start_wait(kubeconfig: str, namespace: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(stemgen_command(kubeconfig, namespace, "wait", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env())


def test_plain_progress_lines_follow_the_status(control_plane, api_client, namespace: str) -> None:
    StemGenClient(kubeconfig=control_plane.kubeconfig, namespace=namespace).create(stems=["drums", "bass"],
                                                                                    name="song")
    process = _start_wait(control_plane.kubeconfig, namespace, "song", "--timeout", "120")
    assert process.stderr is not None
    first = process.stderr.readline()  # the CLI has read the request and is now watching
    assert first.startswith(f"{namespace}/song Pending"), first
    with StatusPlayer(api_client, namespace, "song", [*PROGRESSION, succeeded(OUTPUTS)], interval=0.5):
        stdout, rest = process.communicate(timeout=120)
    assert process.returncode == 0, rest
    lines = [first.strip(), *rest.strip().splitlines()]
    seen = [(line.split()[1], line.split()[2], line.split()[3]) for line in lines]
    assert seen == [
        ("Pending", "stage=-", "progress=-"),
        ("Queued", "stage=queued", "progress=0%"),
        ("Running", "stage=loading-model", "progress=5%"),
        ("Running", "stage=generating", "progress=30%"),
        ("Running", "stage=generating", "progress=70%"),
        ("Running", "stage=uploading", "progress=90%"),
        ("Succeeded", "stage=done", "progress=100%"),
    ]
    assert all(line.split()[4].startswith("elapsed=") for line in lines)
    assert stdout.splitlines()[0] == f"{namespace}/song Succeeded"
    assert "drums" in stdout and "bass" in stdout and "abababababab" in stdout


def test_live_bar_on_a_terminal(control_plane, api_client, namespace: str) -> None:
    """With stderr on a TTY (auto-detected, no flag), rich draws the bar with stage and percent."""
    StemGenClient(kubeconfig=control_plane.kubeconfig, namespace=namespace).create(stems=["drums"], name="tty")
    leader, follower = pty.openpty()
    process = subprocess.Popen(stemgen_command(control_plane.kubeconfig, namespace, "wait", "tty", "--timeout", "120"),
                               stdout=subprocess.PIPE, stderr=follower, text=True, env=clean_env(TERM="xterm"))
    os.close(follower)
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the CLI closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    # Start moving once the bar is drawn, so the CLI sees the updates live.
    with StatusPlayer(api_client, namespace, "tty", [*PROGRESSION[1:3], succeeded(OUTPUTS[:1])], interval=0.6,
                      start_when=lambda: b"tty" in b"".join(chunks)):
        stdout, _ = process.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0
    assert "\x1b[" in screen  # drawn with terminal control sequences, not plain lines
    assert "loading-model" in screen and "generating" in screen and "done" in screen
    assert "100%" in screen and "Succeeded" in screen
    assert "stage=" not in screen  # not the plain format
    assert "tty Succeeded" in stdout


def test_submit_wait_exits_3_when_the_request_fails(control_plane, api_client, namespace: str) -> None:
    name = name_for_request("fail-me")
    stemgen = StemGenClient(kubeconfig=control_plane.kubeconfig, namespace=namespace)

    def exists() -> bool:
        return any(item.name == name for item in stemgen.list())

    with StatusPlayer(api_client, namespace, name,
                      [PROGRESSION[1], failed(c.FailureReason.GENERATION_ERROR.value, "NaN in logits")],
                      start_when=exists):
        result = run_stemgen(control_plane.kubeconfig, namespace, "submit", "-s", "drums", "--request-id", "fail-me",
                             "--wait", "--timeout", "120")
    assert result.returncode == CliExit.FAILED, result.stderr
    assert result.stdout.splitlines()[0] == f"stemgeneration.stemgen.io/{name} created"
    assert "GenerationError" in result.stderr and "NaN in logits" in result.stderr
    assert f"{namespace}/{name} Running stage=loading-model progress=5%" in result.stderr
