"""One pod's life on the agent: prepare, run its containers as local processes, report, clean up.

A thread per pod, like the kubelet's pod workers. The worker owns every status write for its
pod, so writes never race each other; the agent's watch only tells it to stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from . import podspec, status
from .credentials import ClusterEntry, request_pod_token, token_kubeconfig, write_kubeconfig
from .process import ContainerProcess, ProcessOutcome, utc_now
from .status import ContainerReport, Termination

log = logging.getLogger(__name__)

POD_IP = "127.0.0.1"
CONFIG_RETRY_SECONDS = 2.0
MAX_GRACE_SECONDS = 30.0


@dataclass
class WorkerSettings:
    """What every pod worker shares; filled by the agent from its CLI options."""

    work_root: Path
    volume_root: Path
    admin_kubeconfig: Path
    cluster: ClusterEntry
    claim_dirs: dict[str, Path] = field(default_factory=dict)
    image_entrypoints: dict[str, list[str]] = field(default_factory=dict)
    base_env: dict[str, str] = field(default_factory=dict)
    gpu_env: dict[str, str] = field(default_factory=dict)
    search_path: list[str] = field(default_factory=list)
    use_pod_tokens: bool = True
    keep_pod_dirs: bool = False
    poll_interval: float = 0.2
    max_grace_seconds: float = MAX_GRACE_SECONDS
    allocatable: dict[str, str] = field(default_factory=dict)


class ApiLookup:
    """Secrets and ConfigMaps read through the admin client (what a kubelet's node identity reads)."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core

    def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        values = podspec.decode_secret_data(secret.data)
        values.update(secret.string_data or {})
        return values

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            config_map = self.core.read_namespaced_config_map(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(config_map.data or {})


class PodGone(Exception):
    """The pod no longer exists in the API: nothing left to report to."""


class PodWorker(threading.Thread):
    def __init__(self, pod: Mapping[str, Any], core: client.CoreV1Api, settings: WorkerSettings,
                 on_done: Any = None) -> None:
        metadata = pod["metadata"]
        super().__init__(name=f"pod-{metadata['namespace']}/{metadata['name']}", daemon=True)
        self.pod = pod
        self.core = core
        self.settings = settings
        self.namespace: str = metadata["namespace"]
        self.pod_name: str = metadata["name"]
        self.uid: str = metadata["uid"]
        self.stop_requested = threading.Event()
        self.grace_seconds = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds") or 30)
        self.gone = False
        self.on_done = on_done
        self.pod_dir = settings.work_root / "pods" / self.namespace / f"{self.pod_name}-{self.uid[:8]}"
        self.start_time = utc_now()
        self.last_reported_phase = ""
        self.log = logging.LoggerAdapter(log, {"pod": f"{self.namespace}/{self.pod_name}"})

    # --- control from the agent's watch ------------------------------------------------------

    def request_stop(self, grace_seconds: float | None = None, gone: bool = False) -> None:
        """Deletion: stop the containers (SIGTERM, SIGKILL after the grace period)."""
        if grace_seconds is not None:
            self.grace_seconds = grace_seconds
        self.gone = self.gone or gone
        self.stop_requested.set()

    def _grace(self) -> float:
        return 0.0 if self.gone else min(self.grace_seconds, self.settings.max_grace_seconds)

    # --- the pod's life ----------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except PodGone:
            self.log.info("pod %s/%s is gone; worker ends", self.namespace, self.pod_name)
        except Exception as error:
            self.log.exception("pod worker for %s/%s failed", self.namespace, self.pod_name)
            self._report_agent_error(error)
        finally:
            if self.stop_requested.is_set() and not self.gone:
                self._finalize_deletion()
            self._cleanup()
            if self.on_done is not None:
                self.on_done(self)

    def _run(self) -> None:
        spec = self.pod.get("spec") or {}
        containers = spec.get("containers") or []
        init_containers = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") != "Always"]
        if len(containers) > 1:
            self.log.warning("pod %s/%s has %d containers; the node agent runs only the first (%s)",
                             self.namespace, self.pod_name, len(containers), containers[0]["name"])
        main = containers[0]
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        self.start_time = utc_now()
        deadline = None
        if spec.get("activeDeadlineSeconds"):
            deadline = time.monotonic() + float(spec["activeDeadlineSeconds"])

        init_reports = [ContainerReport(name=c["name"], image=c.get("image", "")) for c in init_containers]
        main_report = ContainerReport(name=main["name"], image=main.get("image", ""))
        self._report([main_report], init_reports)

        prepared = self._prepare(main_report, init_reports, deadline)
        if prepared is None:
            self._report_never_ran(main_report, init_reports, deadline)
            return
        volume_paths, kubeconfig = prepared

        for index, init in enumerate(init_containers):
            def report_init(report: ContainerReport, i: int = index) -> None:
                self._report([main_report], [*init_reports[:i], report, *init_reports[i + 1:]])

            init_reports[index] = self._run_container(init, volume_paths, kubeconfig, deadline, "Never", report_init)
            if (init_reports[index].terminated is None or init_reports[index].terminated.exit_code != 0
                    or self.stop_requested.is_set() or self._deadline_passed(deadline)):
                self._report([main_report], init_reports, phase="Failed", **self._pod_reason(deadline))
                return

        restart_policy = spec.get("restartPolicy") or "Always"
        final = self._run_container(main, volume_paths, kubeconfig, deadline, restart_policy,
                                    lambda report: self._report([report], init_reports))
        self._report([final], init_reports, **self._pod_reason(deadline))

    def _report_agent_error(self, error: Exception) -> None:
        """A bug or I/O failure in the agent itself must not leave the pod Running forever."""
        containers = (self.pod.get("spec") or {}).get("containers") or []
        if not containers:
            return
        now = utc_now()
        termination = Termination(exit_code=128, reason="StartError", message=f"node agent error: {error}"[:1000],
                                  started_at=now, finished_at=now)
        report = ContainerReport(name=containers[0]["name"], image=containers[0].get("image", ""),
                                 terminated=termination)
        with contextlib.suppress(Exception):
            self._report([report], [], phase="Failed")

    def _containers_to_run(self) -> list[Mapping[str, Any]]:
        spec = self.pod.get("spec") or {}
        inits = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") != "Always"]
        return [*inits, *(spec.get("containers") or [])[:1]]

    def _report_never_ran(self, main_report: ContainerReport, init_reports: list[ContainerReport],
                          deadline: float | None) -> None:
        """Deleted (or past its deadline) before it could start: a kubelet still leaves it Failed."""
        now = utc_now()
        never = Termination(exit_code=status.EXIT_SIGKILL, reason="ContainerStatusUnknown",
                            message="The container could not be located when the pod was terminated",
                            started_at=now, finished_at=now)
        self._report([replace(main_report, terminated=never)], init_reports, phase="Failed",
                     **self._pod_reason(deadline))

    def _deadline_passed(self, deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def _pod_reason(self, deadline: float | None) -> dict[str, str]:
        if self._deadline_passed(deadline):
            return {"phase": "Failed", "reason": status.POD_REASON_DEADLINE, "message": status.POD_MESSAGE_DEADLINE}
        return {}

    # --- preparation -------------------------------------------------------------------------

    def _prepare(self, main_report: ContainerReport, init_reports: list[ContainerReport],
                 deadline: float | None) -> tuple[dict[str, Path], Path] | None:
        """Volumes and credentials; retried while a referenced object is missing, like a kubelet."""
        last_error = ""
        while not self.stop_requested.is_set() and not self._deadline_passed(deadline):
            try:
                volume_paths = self._volumes()
                kubeconfig = self._kubeconfig()
                for container in self._containers_to_run():
                    self._environment(container, volume_paths, kubeconfig)  # env refs resolvable?
                return volume_paths, kubeconfig
            except podspec.ContainerConfigError as error:
                if str(error) != last_error:
                    last_error = str(error)
                    self.log.warning("pod %s/%s cannot start yet: %s", self.namespace, self.pod_name, error)
                    waiting = replace(main_report, waiting_reason=status.REASON_CONFIG_ERROR,
                                      waiting_message=str(error))
                    self._report([waiting], init_reports)
                self.stop_requested.wait(CONFIG_RETRY_SECONDS)
        return None

    def _volumes(self) -> dict[str, Path]:
        lookup = ApiLookup(self.core)
        token = ""
        paths: dict[str, Path] = {}
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            path = podspec.volume_path(volume, volume_root=self.settings.volume_root, pod_dir=self.pod_dir,
                                       claim_dirs=self.settings.claim_dirs)
            path.mkdir(parents=True, exist_ok=True)
            if any(volume.get(kind) for kind in ("configMap", "secret", "projected", "downwardAPI")):
                if volume.get("projected") and not token:
                    token = self._token_or_empty()
                files = podspec.volume_files(volume, self.pod, lookup, token=token,
                                             ca_data=self.settings.cluster.ca_pem, pod_ip=POD_IP)
                for relative, text in files.items():
                    target = path / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text)
            paths[volume["name"]] = path
        return paths

    def _token_or_empty(self) -> str:
        try:
            return request_pod_token(self.core, self.pod)
        except ApiException as error:
            self.log.warning("TokenRequest for %s/%s failed (%s)", self.namespace, self.pod_name, error.reason)
            return ""

    def _kubeconfig(self) -> Path:
        """The pod's own ServiceAccount token when the API server issues one, else the admin kubeconfig."""
        if self.settings.use_pod_tokens:
            token = self._token_or_empty()
            if token:
                service_account = (self.pod.get("spec") or {}).get("serviceAccountName") or "default"
                config = token_kubeconfig(self.settings.cluster, token, self.namespace,
                                          f"system:serviceaccount:{self.namespace}:{service_account}")
                return write_kubeconfig(self.pod_dir / "kubeconfig", config)
            self.log.warning("pod %s/%s runs with the ADMIN kubeconfig (no ServiceAccount token)", self.namespace,
                             self.pod_name)
        return self.settings.admin_kubeconfig

    def _environment(self, container: Mapping[str, Any], volume_paths: Mapping[str, Path],
                     kubeconfig: Path) -> tuple[list[str], dict[str, str], Path, podspec.PathRewriter]:
        env = podspec.resolve_env(self.pod, container, ApiLookup(self.core), pod_ip=POD_IP,
                                  allocatable=self.settings.allocatable)
        argv = podspec.container_argv(container, self.settings.image_entrypoints, env)
        mounts = podspec.container_mounts(container, volume_paths,
                                          termination_log=self.pod_dir / f"{container['name']}.termination-log")
        rewriter = podspec.PathRewriter(mounts)
        process_env = {
            **self.settings.base_env,
            "HOME": str(self.pod_dir / "home"),
            "TMPDIR": str(self.pod_dir / "tmp"),
            "HOSTNAME": self.pod_name,
            **rewriter.rewrite_env(env),
            "KUBECONFIG": str(kubeconfig),
        }
        if podspec.gpu_request(container):
            process_env.update(self.settings.gpu_env)
        argv = [rewriter.rewrite_arg(arg) for arg in argv]
        argv[0] = podspec.resolve_executable(argv[0], self.settings.search_path)
        working_dir = container.get("workingDir")
        cwd = Path(rewriter.rewrite_path(working_dir)) if working_dir else self.pod_dir / "work"
        for directory in (Path(process_env["HOME"]), Path(process_env["TMPDIR"]), cwd):
            directory.mkdir(parents=True, exist_ok=True)
        return argv, process_env, cwd, rewriter

    # --- running -----------------------------------------------------------------------------

    def _run_container(self, container: Mapping[str, Any], volume_paths: Mapping[str, Path], kubeconfig: Path,
                       deadline: float | None, restart_policy: str, report: Any) -> ContainerReport:
        """Run (and for restartPolicy OnFailure, re-run) one container until it ends for good.

        Returns the container's final report (state terminated).
        """
        name = container["name"]
        image = container.get("image", "")
        restarts = 0
        last: Termination | None = None
        while True:
            try:
                argv, env, cwd, _ = self._environment(container, volume_paths, kubeconfig)
            except podspec.ContainerConfigError as error:
                now = utc_now()
                return ContainerReport(name=name, image=image, restart_count=restarts, last_termination=last,
                                       terminated=Termination(exit_code=128, reason=status.REASON_CONFIG_ERROR,
                                                              message=str(error), started_at=now, finished_at=now))
            termination_log = self.pod_dir / f"{name}.termination-log"
            termination_log.write_text("")
            log_path = self.pod_dir / f"{name}.log"
            process = ContainerProcess(argv, env=env, cwd=cwd, log_path=log_path,
                                       memory_limit=podspec.memory_limit_bytes(container),
                                       poll_interval=self.settings.poll_interval)
            try:
                process.start()
            except OSError as error:
                now = utc_now()
                self.log.warning("pod %s/%s container %s cannot start: %s", self.namespace, self.pod_name, name,
                                 error)
                return ContainerReport(name=name, image=image, restart_count=restarts, last_termination=last,
                                       terminated=Termination(exit_code=128, reason=status.REASON_START_ERROR,
                                                              message=str(error), started_at=now, finished_at=now))
            self.log.info("pod %s/%s container %s started (pid %d): %s", self.namespace, self.pod_name, name,
                          process.pid, " ".join(argv))
            container_id = f"stemgen-agent://{process.pid}"
            running = ContainerReport(name=name, image=image, container_id=container_id, restart_count=restarts,
                                      running_since=process.started_at, last_termination=last)
            report(running)
            outcome = process.wait(stop_requested=self.stop_requested, grace_seconds=self._grace, deadline=deadline)
            termination = self._termination(container, outcome, termination_log, log_path)
            self.log.info("pod %s/%s container %s exited: code %d reason %s", self.namespace, self.pod_name, name,
                          termination.exit_code, termination.reason)
            finished = replace(running, terminated=termination, running_since=None)
            should_restart = (restart_policy == "OnFailure" and termination.exit_code != 0
                              and not outcome.stopped and not outcome.deadline_exceeded)
            if not should_restart:
                return finished
            restarts += 1
            last = termination
            report(replace(running, terminated=None, running_since=None, waiting_reason="CrashLoopBackOff",
                           restart_count=restarts, last_termination=termination))
            if self.stop_requested.wait(min(10.0, 0.5 * 2 ** restarts)):
                return finished

    def _termination(self, container: Mapping[str, Any], outcome: ProcessOutcome, termination_log: Path,
                     log_path: Path) -> Termination:
        exit_code = status.EXIT_SIGKILL if outcome.oom_killed else status.exit_code_of(outcome.returncode)
        file_text = termination_log.read_text(errors="replace") if termination_log.exists() else ""
        try:
            with open(log_path, "rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                log_file.seek(max(0, log_file.tell() - 64 * 1024))
                tail = log_file.read().decode(errors="replace")
        except OSError:
            tail = ""
        message = status.termination_message(file_text, tail, exit_code=exit_code,
                                             policy=container.get("terminationMessagePolicy") or "File")
        return Termination(exit_code=exit_code, reason=status.container_reason(exit_code, outcome.oom_killed),
                           message=message, started_at=outcome.started_at, finished_at=outcome.finished_at)

    # --- reporting ---------------------------------------------------------------------------

    def _report(self, containers: list[ContainerReport], init_containers: list[ContainerReport],
                **extra: str) -> None:
        patch = status.pod_status_patch(containers, init_containers=init_containers, ip=POD_IP,
                                         start_time=self.start_time, now=utc_now(), **extra)
        phase = patch["status"]["phase"]
        for attempt in range(5):
            try:
                self.core.patch_namespaced_pod_status(self.pod_name, self.namespace, patch)
                break
            except ApiException as error:
                if error.status == 404:
                    self.gone = True
                    raise PodGone() from None
                if error.status in (400, 422):
                    self.log.error("pod %s/%s status patch refused: %s", self.namespace, self.pod_name, error.body)
                    return
                time.sleep(0.5 * (attempt + 1))
        if phase != self.last_reported_phase:
            self.log.info("pod %s/%s is %s", self.namespace, self.pod_name, phase)
            self.last_reported_phase = phase

    def _finalize_deletion(self) -> None:
        """After a graceful deletion the kubelet confirms with a grace-period-0 delete."""
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(self.pod_name, self.namespace, grace_period_seconds=0,
                                            body=client.V1DeleteOptions(
                                                grace_period_seconds=0,
                                                preconditions=client.V1Preconditions(uid=self.uid)))
            self.log.info("pod %s/%s deleted (grace period 0)", self.namespace, self.pod_name)

    def _cleanup(self) -> None:
        """emptyDirs go with the pod; logs stay (under the pod dir) unless told otherwise."""
        if self.settings.keep_pod_dirs:
            return
        for path in (self.pod_dir / "volumes", self.pod_dir / "tmp", self.pod_dir / "home", self.pod_dir / "work"):
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.pod_dir / "kubeconfig").unlink()

