"""Operator admission under a burst (issue 4's benchmark): N StemGenerations at once → N Jobs.

    .venv/bin/python bench/bench_operator.py                  # 500 requests, own control plane
    .venv/bin/python bench/bench_operator.py -n 200
    .venv/bin/python bench/bench_operator.py --kubeconfig /path/kubeconfig   # an existing cluster

What it does: starts a control plane (or uses the given one), runs the real `stemgen-operator`
console script as its own process (so its RSS is the operator's alone) watching a fresh namespace,
with pool limits above N so the limit never throttles; then creates N requests from 8 client
threads as fast as the API server takes them, and watches Jobs appear.

Reported:
  CR-to-Job latency  per request: the Job's ADDED watch event minus the moment its create call returned
  throughput         N / (last Job seen - first create sent), in requests per second
  operator RSS       sampled every 0.2 s: before the burst, peak, after
The Job controller creates a pod for each Job in the same control plane, on the same cores; on a
shared machine compare runs with each other, not with a dedicated cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, config, watch

from stemgen_api import contract as c
from stemgen_operator.testing import request_manifest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), self.process.memory_info().rss))
            except psutil.Error:
                return
            time.sleep(0.2)

    def rss_mb(self) -> float:
        return self.process.memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=500)
    parser.add_argument("--kubeconfig", default=None, help="use this cluster instead of starting one")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument("--clients", type=int, default=8, help="client threads creating requests")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)

    plane = None
    kubeconfig = args.kubeconfig
    if not kubeconfig:
        from stemgen_dev.cluster import start_control_plane

        print("starting a control plane ...", flush=True)
        plane = start_control_plane(Path(tempfile.mkdtemp(prefix="bench-operator-")))
        kubeconfig = plane.kubeconfig
    api = config.new_client_from_config(config_file=kubeconfig)
    api.configuration.connection_pool_maxsize = args.clients + 4
    core, batch, custom = client.CoreV1Api(api), client.BatchV1Api(api), client.CustomObjectsApi(api)
    namespace = f"bench-operator-{int(time.time())}"
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "stemgen-runner"}})

    health_port, metrics_port = free_port(), free_port()
    env = {**os.environ,
           "STEMGEN_OPERATOR_KUBECONFIG": kubeconfig,
           "STEMGEN_OPERATOR_NAMESPACES": namespace,
           "STEMGEN_OPERATOR_CPU_POOL": json.dumps({"limit": args.requests * 2}),
           "STEMGEN_OPERATOR_LIVENESS_PORT": str(health_port),
           "STEMGEN_OPERATOR_METRICS_PORT": str(metrics_port),
           "STEMGEN_OPERATOR_LOG_FORMAT": "json"}
    log_path = Path(tempfile.gettempdir()) / f"{namespace}-operator.log"
    executable = Path(sys.executable).with_name("stemgen-operator")
    with log_path.open("wb") as log:
        operator = subprocess.Popen([str(executable)], env=env, stdout=log, stderr=subprocess.STDOUT)
    sampler = RssSampler(operator.pid)
    results: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or operator.poll() is not None:
                    raise RuntimeError(f"operator did not become healthy; see {log_path}") from None
                time.sleep(0.2)
        time.sleep(1.0)
        rss_before = sampler.rss_mb()
        sampler.start()

        seen: dict[str, float] = {}
        jobs_added: list[str] = []
        all_seen = threading.Event()

        def watch_jobs() -> None:
            stream = watch.Watch()
            for event in stream.stream(batch.list_namespaced_job, namespace, timeout_seconds=int(args.timeout) + 30):
                if event["type"] == "ADDED":
                    owner = event["object"].metadata.labels.get(c.LABEL_NAME)
                    jobs_added.append(owner)
                    seen.setdefault(owner, time.monotonic())
                    if len(seen) >= args.requests:
                        all_seen.set()
                        stream.stop()

        watcher = threading.Thread(target=watch_jobs, daemon=True)
        watcher.start()
        time.sleep(0.5)

        created: dict[str, float] = {}
        names = [f"burst-{index:04d}" for index in range(args.requests)]

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL,
                                                   request_manifest(name, device="cpu"))
            created[name] = time.monotonic()

        print(f"creating {args.requests} StemGenerations from {args.clients} threads ...", flush=True)
        burst_start = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(create, names))
        burst_end = time.monotonic()
        finished = all_seen.wait(args.timeout - (burst_end - burst_start))
        done = time.monotonic()
        sampler.stop.set()
        sampler.join(2)

        latencies = [seen[name] - created[name] for name in names if name in seen]
        last_seen = max(seen.values()) if seen else done
        peak = max((rss for _, rss in sampler.samples), default=0) / 2**20
        metrics_text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        passes = next((line.split()[-1] for line in metrics_text.splitlines()
                       if line.startswith("stemgen_reconcile_pass_seconds_count")), "?")
        results = {
            "requests": args.requests,
            "jobs_seen": len(seen),
            "duplicate_jobs": len(jobs_added) - len(seen),
            "complete": finished,
            "create_seconds": round(burst_end - burst_start, 2),
            "create_rate_per_s": round(args.requests / (burst_end - burst_start), 1),
            "burst_to_last_job_seconds": round(last_seen - burst_start, 2),
            "throughput_cr_per_s": round(len(seen) / (last_seen - burst_start), 1) if seen else 0.0,
            "latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "latency_p99_s": round(percentile(latencies, 0.99), 3) if latencies else None,
            "latency_max_s": round(max(latencies), 3) if latencies else None,
            "rss_before_mb": round(rss_before, 1),
            "rss_peak_mb": round(peak, 1),
            "rss_after_mb": round(sampler.rss_mb(), 1),
            "reconcile_passes": passes,
            "cpus": psutil.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "operator_log": str(log_path),
        }
    finally:
        operator.terminate()
        try:
            operator.wait(20)
        except subprocess.TimeoutExpired:
            operator.kill()
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(namespace)
        if plane is not None:
            plane.stop()

    print(json.dumps(results, indent=2))
    print()
    print("| requests | Jobs | create rate (CR/s) | CR→Job throughput (CR/s) | p50 (s) | p99 (s) | max (s) "
          "| RSS before / peak / after (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {results['requests']} | {results['jobs_seen']} | {results['create_rate_per_s']} "
          f"| {results['throughput_cr_per_s']} | {results['latency_p50_s']} | {results['latency_p99_s']} "
          f"| {results['latency_max_s']} | {results['rss_before_mb']} / {results['rss_peak_mb']} / "
          f"{results['rss_after_mb']} |")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
