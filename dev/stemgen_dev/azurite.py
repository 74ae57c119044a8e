"""Azurite, Microsoft's Azure Storage emulator (npm `azurite`), as a real blob store for tests and the demo."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .procs import cache_root, free_port, log_tail, start_process, stop_process, wait_until

AZURITE_VERSION = "3.35.0"
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's documented well-known development key; not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    pass


def ensure_azurite() -> Path:
    """Install azurite with npm into the cache (once per version); returns the azurite-blob launcher."""
    prefix = cache_root() / "node" / f"azurite-{AZURITE_VERSION}"
    launcher = prefix / "node_modules" / ".bin" / "azurite-blob"
    if launcher.exists():
        return launcher
    if shutil.which("npm") is None:
        raise AzuriteError("npm not found: install Node.js >= 18 to run Azurite")
    prefix.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                             f"azurite@{AZURITE_VERSION}"], capture_output=True, text=True)
    if result.returncode != 0 or not launcher.exists():
        raise AzuriteError(f"npm install azurite@{AZURITE_VERSION} failed:\n{result.stderr[-2000:]}")
    return launcher


@dataclass
class Azurite:
    """One Azurite blob service on a fixed loopback port; stop()/start() keep port and data (fault tests)."""

    location: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="stemgen-azurite-")))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.blob_endpoint};")

    @property
    def log_path(self) -> Path:
        return self.location / "azurite.log"

    def start(self, timeout: float = 60.0) -> Azurite:
        if self.process is not None and self.process.poll() is None:
            return self
        launcher = ensure_azurite()
        self.process = start_process([
            str(launcher), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
            "--location", str(self.location / "data"), "--skipApiVersionCheck", "--loose", "--silent",
        ], self.log_path)

        def listening() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AzuriteError(f"azurite exited with {self.process.returncode}: {log_tail(self.log_path)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(listening, timeout, "Azurite blob port", on_timeout=lambda: log_tail(self.log_path))
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.location, ignore_errors=True)
