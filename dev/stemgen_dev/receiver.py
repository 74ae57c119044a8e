"""A real HTTP callback receiver that checks Standard Webhooks signatures (tests and the demo)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stemgen_api.webhooks import verify


@dataclass(frozen=True)
class ReceivedCallback:
    headers: dict[str, str]
    body: bytes
    json: Any
    verified: bool
    status_returned: int
    at: datetime

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class CallbackReceiver:
    """Records every POST; answers scripted status codes first (e.g. [500, 500]) and 200 after."""

    def __init__(self, secret: str = "whsec_" + "c3RlbWdlbi10ZXN0LXNlY3JldC0xMjM0NTY3ODkw", host: str = "127.0.0.1",
                 port: int = 0):
        self.secret = secret
        self.received: list[ReceivedCallback] = []
        self._script: list[int | tuple[int, dict[str, str]]] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = None
                with receiver._lock:
                    step = receiver._script.pop(0) if receiver._script else 200
                    status, extra_headers = step if isinstance(step, tuple) else (step, {})
                    receiver.received.append(ReceivedCallback(
                        headers, body, payload, verify(receiver.secret, headers, body), status,
                        datetime.now(timezone.utc)))
                    receiver._lock.notify_all()
                self.send_response(status)
                for header, value in extra_headers.items():
                    self.send_header(header, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="callback-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/callback"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def script(self, status_codes: list[int | tuple[int, dict[str, str]]]) -> None:
        """Answer these first, in order: a status code, or (status code, extra response headers)."""
        with self._lock:
            self._script = list(status_codes)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedCallback]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {count} callbacks, got {len(self.received)}")
                self._lock.wait(remaining)
            return list(self.received)

    def start(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() blocks forever unless serve_forever is running
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CallbackReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
