"""The thread rule: never more torch threads than the cores this process can actually get."""

from __future__ import annotations

from cryorefine import threads
from cryorefine.threads import allowed_cores, choose_threads


def test_requested_and_environment_win():
    assert choose_threads(3, {"OMP_NUM_THREADS": "2"}, load=0.0).threads == 3
    choice = choose_threads(None, {"OMP_NUM_THREADS": "2"}, load=50.0)
    assert (choice.threads, choice.reason) == (2, "OMP_NUM_THREADS")


def test_a_busy_machine_gets_fewer_threads_never_zero(monkeypatch):
    monkeypatch.setattr(threads, "allowed_cores", lambda environ=None: (2, "CPU affinity"))
    assert choose_threads(None, {}, load=0.1, machine_cores=2).threads == 2
    busy = choose_threads(None, {}, load=5.2, machine_cores=2)
    assert busy.threads == 1 and "load 5.2" in busy.reason
    assert choose_threads(None, {}, load=0.9, machine_cores=2).threads == 1


def test_a_large_node_shared_by_jobs_keeps_its_allocation(monkeypatch):
    """Other jobs' load on a 64-core node does not shrink an 8-core allocation while 8 cores are idle."""
    monkeypatch.setattr(threads, "allowed_cores", lambda environ=None: (8, "SLURM_CPUS_PER_TASK"))
    choice = choose_threads(None, {}, load=56.0, machine_cores=64)
    assert choice.threads == 8 and "load" not in choice.reason


def test_scheduler_allocation_and_bad_values(monkeypatch):
    monkeypatch.setattr(threads, "_cgroup_cores", lambda: None)
    cores, _ = allowed_cores({})
    assert allowed_cores({"SLURM_CPUS_PER_TASK": "1"}) == (1, "SLURM_CPUS_PER_TASK")
    assert allowed_cores({"SLURM_CPUS_PER_TASK": "zero"})[0] == cores
    assert choose_threads(None, {"OMP_NUM_THREADS": "-1"}, load=0.0, machine_cores=cores).reason != "OMP_NUM_THREADS"
