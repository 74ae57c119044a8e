"""CPU thread count for torch, from the container's CPU quota.

torch sizes its thread pool from the CPUs it can see, which in a Kubernetes pod is the whole
node, not the pod's CPU limit. More OpenMP threads than granted CPUs makes every parallel op
wait on descheduled threads at its barrier; on a 2-CPU share we measured a tiny model step
going from ~8 ms to ~300 ms. The quota is read from cgroup v2 (`cpu.max`) or v1 (`cfs_quota`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

THREADS_ENV = "STEMGEN_TORCH_THREADS"


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs granted by the cgroup quota, or None when unlimited / unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def recommended_threads(visible_cpus: int | None = None, limit: float | None = None) -> int:
    """The env override, else the CPUs we may actually use (quota rounded up, at least 1)."""
    override = os.environ.get(THREADS_ENV)
    if override:
        return max(1, int(override))
    visible = visible_cpus or len(os.sched_getaffinity(0))
    if limit is None:
        return visible
    return max(1, min(visible, math.ceil(limit)))


def configure_threads() -> int:
    """Lower torch's intra-op threads to what the pod may use (never raise it); returns the count."""
    import torch

    wanted = recommended_threads(limit=cgroup_cpu_limit())
    if wanted < torch.get_num_threads() or os.environ.get(THREADS_ENV):
        torch.set_num_threads(wanted)
    return torch.get_num_threads()
