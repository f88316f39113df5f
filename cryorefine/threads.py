"""How many CPU threads torch may use: never more than the cores this process can actually get.

torch's OpenMP threads wait for each other at every parallel region, so on a shared machine with
more runnable processes than cores the default (one thread per core) thrashes: one training step
took 4.4 s with 2 threads and 0.31 s with 1 at load 5 on 2 cores (docs/benchmarks.md). The rule,
in order: `--threads`, then `OMP_NUM_THREADS` (the user's or the scheduler's word), else the cores
this process may run on (affinity mask, cgroup quota, `SLURM_CPUS_PER_TASK`) less those the rest
of the machine is keeping busy (the 1-minute load average), and at least one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_V2_QUOTA = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(str(text).strip())
    except ValueError:
        return None
    return value if value >= 1 else None


def _cgroup_cores() -> float | None:
    """The CPU quota of this container in cores, or None when unlimited or unreadable."""
    try:
        if CGROUP_V2_QUOTA.exists():
            quota, period = CGROUP_V2_QUOTA.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if CGROUP_V1_QUOTA.exists():
            quota = int(CGROUP_V1_QUOTA.read_text())
            return None if quota <= 0 else quota / int(CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None
    return None


def allowed_cores(environ: dict[str, str] | None = None) -> tuple[int, str]:
    """The cores this process may use, and which limit set it."""
    environ = os.environ if environ is None else environ
    limits = [(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
               "CPU affinity")]
    quota = _cgroup_cores()
    if quota is not None:
        limits.append((max(1, math.floor(quota)), "cgroup quota"))
    slurm = _positive_int(environ.get("SLURM_CPUS_PER_TASK"))
    if slurm is not None:
        limits.append((slurm, "SLURM_CPUS_PER_TASK"))
    return min(limits)


def choose_threads(requested: int | None = None, environ: dict[str, str] | None = None,
                   load: float | None = None, machine_cores: int | None = None) -> ThreadChoice:
    """The thread count for this run (see the module docstring for the rule)."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        return ThreadChoice(requested, "--threads")
    from_env = _positive_int(environ.get("OMP_NUM_THREADS"))
    if from_env is not None:
        return ThreadChoice(from_env, "OMP_NUM_THREADS")
    cores, limit = allowed_cores(environ)
    load = os.getloadavg()[0] if load is None else load
    machine_cores = machine_cores or os.cpu_count() or cores
    idle = math.floor(machine_cores - load + 0.5)
    if idle < cores:
        threads = max(1, idle)
        return ThreadChoice(threads, f"{cores} cores ({limit}), load {load:.1f} on {machine_cores}")
    return ThreadChoice(cores, f"{cores} cores ({limit})")


def apply_threads(requested: int | None = None) -> ThreadChoice:
    """Choose and set torch's thread count; imports torch, so call it only when a command runs."""
    import torch

    choice = choose_threads(requested)
    torch.set_num_threads(choice.threads)
    return choice
