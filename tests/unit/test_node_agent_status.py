"""Pod status and node manifests the node agent reports (what the Job controller reads)."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from stemgen_dev.agent import nodes, status
from stemgen_dev.agent.process import ContainerProcess
from stemgen_dev.agent.status import ContainerReport, Termination

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
T1 = T0 + dt.timedelta(seconds=7)


def test_running_patch_has_phase_ip_and_ready_conditions() -> None:
    report = ContainerReport(name="runner", image="img", container_id="stemgen-agent://42", running_since=T0)
    patch = status.pod_status_patch([report], ip="127.0.0.1", start_time=T0, now=T1)["status"]
    assert patch["phase"] == "Running"
    assert (patch["podIP"], patch["hostIP"], patch["startTime"]) == ("127.0.0.1", "127.0.0.1", "2026-01-02T03:04:05Z")
    assert {c["type"]: c["status"] for c in patch["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    container = patch["containerStatuses"][0]
    assert container["state"] == {"running": {"startedAt": "2026-01-02T03:04:05Z"}}
    assert (container["ready"], container["started"], container["containerID"]) == (True, True, "stemgen-agent://42")


@pytest.mark.parametrize(("exit_code", "oom", "phase", "reason"), [
    (0, False, "Succeeded", "Completed"),
    (3, False, "Failed", "Error"),
    (137, True, "Failed", "OOMKilled"),
])
def test_terminated_patch(exit_code: int, oom: bool, phase: str, reason: str) -> None:
    termination = Termination(exit_code=exit_code, reason=status.container_reason(exit_code, oom), message="why",
                              started_at=T0, finished_at=T1)
    report = ContainerReport(name="runner", image="img", terminated=termination)
    patch = status.pod_status_patch([report], ip="127.0.0.1", start_time=T0, now=T1)["status"]
    assert patch["phase"] == phase
    terminated = patch["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (exit_code, reason, "why")
    assert terminated["finishedAt"] == "2026-01-02T03:04:12Z"
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")


def test_deadline_patch_carries_pod_reason() -> None:
    termination = Termination(137, "Error", "", T0, T1)
    patch = status.pod_status_patch([ContainerReport("runner", "img", terminated=termination)], ip="127.0.0.1",
                                    start_time=T0, now=T1, phase="Failed", reason=status.POD_REASON_DEADLINE,
                                    message=status.POD_MESSAGE_DEADLINE)["status"]
    assert (patch["phase"], patch["reason"]) == ("Failed", "DeadlineExceeded")


def test_waiting_patch_and_failed_init_container() -> None:
    waiting = ContainerReport("runner", "img", waiting_reason=status.REASON_CONFIG_ERROR, waiting_message="no secret")
    patch = status.pod_status_patch([waiting], ip="127.0.0.1", start_time=T0, now=T1)["status"]
    assert patch["phase"] == "Pending"
    assert patch["containerStatuses"][0]["state"] == {"waiting": {"reason": "CreateContainerConfigError",
                                                                  "message": "no secret"}}
    failed_init = ContainerReport("init", "img", terminated=Termination(1, "Error", "", T0, T1))
    assert status.phase_of([ContainerReport("runner", "img")], [failed_init]) == "Failed"


@pytest.mark.parametrize(("returncode", "exit_code"), [(0, 0), (1, 1), (-signal.SIGKILL, 137), (-signal.SIGTERM, 143)])
def test_exit_code_of_signals(returncode: int, exit_code: int) -> None:
    assert status.exit_code_of(returncode) == exit_code


def test_termination_message_policy() -> None:
    log = "\n".join(f"line {i}" for i in range(200))
    assert status.termination_message("from file", log, policy="FallbackToLogsOnError", exit_code=1) == "from file"
    fallback = status.termination_message("", log, policy="FallbackToLogsOnError", exit_code=1)
    assert fallback.splitlines()[0] == "line 120" and fallback.endswith("line 199")
    assert status.termination_message("", log, policy="File", exit_code=1) == ""
    assert status.termination_message("", log, policy="FallbackToLogsOnError", exit_code=0) == ""
    assert len(status.termination_message("x" * 10000, "", policy="File", exit_code=1)) == status.MAX_MESSAGE_BYTES


def test_gpu_node_manifest_and_lease() -> None:
    pool = nodes.gpu_pool(2, gpus_per_node=4, taints=(nodes.Taint.parse("sku=gpu:NoSchedule"),),
                          extra_labels=nodes.parse_labels(["team=audio"]))
    assert nodes.node_names("agent", pool) == ["agent-gpu-0", "agent-gpu-1"]
    node = nodes.build_node("agent-gpu-0", pool, "agent", T0)
    assert node["metadata"]["labels"]["kubernetes.azure.com/agentpool"] == "gpu"
    assert node["metadata"]["labels"]["team"] == "audio"
    assert node["metadata"]["labels"][nodes.AGENT_LABEL] == "agent"
    assert node["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
    cpu = nodes.build_node("agent-cpu-0", nodes.cpu_pool(1), "agent", T0)
    assert "nvidia.com/gpu" not in cpu["status"]["capacity"] and cpu["spec"]["taints"] == []
    lease = nodes.build_lease("agent-gpu-0", "uid-1", T0)
    assert lease["spec"]["renewTime"] == "2026-01-02T03:04:05.000000Z"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


@pytest.mark.parametrize("text", ["nocolon", "k=v:Sometimes", "=v:NoSchedule"])
def test_bad_taints_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="taint"):
        nodes.Taint.parse(text)


# ContainerProcess runs real (tiny) local processes: the OOM, deadline and stop paths.


def _process(tmp_path: Path, code: str, memory_limit: int | None = None) -> ContainerProcess:
    process = ContainerProcess([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                               log_path=tmp_path / "log", memory_limit=memory_limit, poll_interval=0.05)
    process.start()
    return process


def test_process_over_memory_limit_is_killed(tmp_path: Path) -> None:
    process = _process(tmp_path, "import time; hog = b'x' * (200 * 1024 * 1024); time.sleep(30)", 50 * 1024 * 1024)
    outcome = process.wait(stop_requested=threading.Event(), grace_seconds=lambda: 1.0)
    assert outcome.oom_killed and outcome.returncode == -signal.SIGKILL


def test_process_deadline_and_stop(tmp_path: Path) -> None:
    started = time.monotonic()
    outcome = _process(tmp_path, "import time; time.sleep(30)").wait(
        stop_requested=threading.Event(), grace_seconds=lambda: 1.0, deadline=time.monotonic() + 0.5)
    assert outcome.deadline_exceeded and outcome.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 20
    stop = threading.Event()
    stop.set()
    ignoring = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); " \
               "time.sleep(30)"
    process = _process(tmp_path, ignoring)
    while "up" not in (tmp_path / "log").read_text():
        time.sleep(0.05)
    outcome = process.wait(stop_requested=stop, grace_seconds=lambda: 0.3)
    assert outcome.stopped and outcome.returncode == -signal.SIGKILL


def test_process_exit_code_and_log(tmp_path: Path) -> None:
    outcome = _process(tmp_path, "import sys; print('hello'); sys.exit(5)").wait(
        stop_requested=threading.Event(), grace_seconds=lambda: 1.0)
    assert outcome.returncode == 5 and not outcome.oom_killed
    assert (tmp_path / "log").read_text().strip() == "hello"
