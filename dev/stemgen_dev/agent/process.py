"""One container as a local process group, watched like a kubelet watches a container.

A cgroup would give us memory accounting and OOM kills for free; a local process has none,
so the agent samples the RSS of the process tree (psutil) and kills it with SIGKILL when it
passes the container's memory limit, then reports `OOMKilled` (exit 137) just as a node
would. Sampling means a very short spike can slip through; the Job-level behaviour the
tests need (a runner that keeps growing gets killed) does not depend on that.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class ProcessOutcome:
    returncode: int
    started_at: dt.datetime
    finished_at: dt.datetime
    oom_killed: bool = False
    deadline_exceeded: bool = False
    stopped: bool = False
    peak_rss: int = 0


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class ContainerProcess:
    """Starts argv in its own session (so the whole tree can be signalled) with output to a log file."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path,
                 memory_limit: int | None = None, poll_interval: float = 0.2) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.memory_limit = memory_limit
        self.poll_interval = poll_interval
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = utc_now()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        """Raises OSError when the program cannot be executed (reported as StartError)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log_file,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        self.started_at = utc_now()

    def wait(self, *, stop_requested: threading.Event, grace_seconds: Callable[[], float],
             deadline: float | None = None, deadline_grace: float = 2.0) -> ProcessOutcome:
        """Block until the process ends, killing it on OOM, on the deadline or when asked to stop.

        `deadline` is a `time.monotonic()` instant; `grace_seconds` is read when the stop is
        requested because the deletion's grace period is only known then.
        """
        assert self.popen is not None
        oom_killed = deadline_exceeded = stopped = False
        peak = 0
        while True:
            returncode = self.popen.poll()
            if returncode is not None:
                break
            if self.memory_limit is not None and not oom_killed:
                rss = tree_rss(self.popen.pid)
                peak = max(peak, rss)
                if rss > self.memory_limit:
                    log.warning("pid %s over its memory limit (%d > %d bytes): OOM kill", self.popen.pid, rss,
                                self.memory_limit)
                    oom_killed = True
                    signal_group(self.popen.pid, signal.SIGKILL)
            if deadline is not None and not deadline_exceeded and time.monotonic() >= deadline:
                deadline_exceeded = True
                self._stop(deadline_grace)
                continue
            if stop_requested.is_set() and not stopped and not oom_killed:
                stopped = True
                self._stop(grace_seconds())
                continue
            time.sleep(self.poll_interval)
        # Like a cgroup teardown: whatever the container left running goes with it.
        signal_group(self.popen.pid, signal.SIGKILL)
        return ProcessOutcome(returncode=returncode, started_at=self.started_at, finished_at=utc_now(),
                              oom_killed=oom_killed, deadline_exceeded=deadline_exceeded, stopped=stopped,
                              peak_rss=peak)

    def _stop(self, grace: float) -> None:
        """SIGTERM the group, SIGKILL it if still alive after the grace period."""
        assert self.popen is not None
        signal_group(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=max(grace, 0.0))
        except subprocess.TimeoutExpired:
            signal_group(self.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
