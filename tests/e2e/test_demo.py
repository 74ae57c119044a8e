"""The README's first command, run the way `make demo` runs it, with its output checked."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stemgen_dev.procs import REPO_ROOT

pytestmark = pytest.mark.e2e

STEMS = ("drums", "bass", "guitar", "piano")


def test_demo_runs_end_to_end_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "stemgen_dev.demo", "--workdir", str(tmp_path / "demo"), "--out", str(out),
         "--duration", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]

    for stem in STEMS:
        row = re.search(rf"│ {stem}\s+│ ([0-9.]+)\s+│ (\S+)\s+│ ([0-9a-f]{{64}})\s+│ (\S+)", output)
        assert row, f"no table row for {stem}:\n{output[-4000:]}"
        seconds, url, sha256, path = row.groups()
        assert float(seconds) == pytest.approx(1.0, abs=0.05)
        assert url.endswith(f"/{stem}.wav") and url.startswith("http://127.0.0.1:")
        data = Path(path).read_bytes()
        assert Path(path).parent == out
        assert data[:4] == b"RIFF" and hashlib.sha256(data).hexdigest() == sha256

    assert "callback received" in output
    assert re.search(r"type=stemgeneration\.succeeded\s+signature=valid\s+answered=200", output), output[-3000:]
    assert "TINY RANDOM-WEIGHT" in output
    assert "tearing down" in output
