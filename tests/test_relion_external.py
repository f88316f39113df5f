"""The RELION External job: argument forms, node labels per RELION version, abort, failure, and a real
run through RELION 3.1's own `relion_pipeliner`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from relion_external.nodes import (
    NodeKind,
    OutputNode,
    RelionVersion,
    detect_relion_version,
    write_output_nodes,
)
from relion_external.wrapper import ABORTED, FAILURE, SUCCESS, JobFailure, parse_job, plan_steps
from tests.conftest import REPO, shared_data

LAUNCHER = REPO / "relion_external" / "cryorefine_relion.sh"
JOB = "External/job001/"

PIPELINE_3_1 = """
# version 30001

data_pipeline_general

_rlnPipeLineJobCounter                       1
"""

PIPELINE_4_0 = """
# version 30001

data_pipeline_general

_rlnPipeLineJobCounter                       2

# version 30001

data_pipeline_processes

loop_
_rlnPipeLineProcessName #1
_rlnPipeLineProcessAlias #2
_rlnPipeLineProcessTypeLabel #3
_rlnPipeLineProcessStatusLabel #4
Import/job001/       None relion.importmovies  Succeeded

# version 30001

data_pipeline_nodes

loop_
_rlnPipeLineNodeName #1
_rlnPipeLineNodeTypeLabel #2
Import/job001/movies.star MicrographMovieGroupMetadata.star.relion
"""

PIPELINE_5_0 = PIPELINE_4_0.replace("# version 30001", "# version 50001")


def _read_loop(path: Path) -> tuple[list[str], list[list[str]]]:
    """Column names and rows of the (single) loop in a small STAR file."""
    columns, rows = [], []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("_"):
            columns.append(line.split()[0])
        elif columns and line and not line.startswith(("#", "data_", "loop_")):
            rows.append(line.split())
    return columns, rows


def _pipeline_table(pipeline: Path, table: str) -> list[list[str]]:
    """Rows of one `data_<table>` loop of a RELION 3.1 pipeline file."""
    rows, inside = [], False
    for line in pipeline.read_text().splitlines():
        line = line.strip()
        if line.startswith("data_"):
            inside = line == f"data_{table}"
        elif inside and line and not line.startswith(("_", "#", "loop_")):
            rows.append(line.split())
    return rows


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A RELION 3.1 project holding the 10 real TRPV1 particles and their consensus map."""
    source = shared_data("trpv1")
    project_dir = tmp_path / "project dir"  # a space, as users' folders have
    project_dir.mkdir()
    for name in ("particles.star", "particles.mrcs", "consensus_map.mrc"):
        shutil.copyfile(source / name, project_dir / name)
    (project_dir / "default_pipeline.star").write_text(PIPELINE_3_1)
    (project_dir / JOB).mkdir(parents=True)
    return project_dir


def _launcher_env(**extra: str) -> dict[str, str]:
    """The bare environment RELION may give a job, plus the Python to use."""
    return {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
            "CRYOREFINE_PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **extra}


def _run_launcher(project_dir: Path, *args: str, env: dict[str, str] | None = None,
                  timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(LAUNCHER), *args], cwd=project_dir, env=env or _launcher_env(),
                          capture_output=True, text=True, timeout=timeout)


def _markers(job_dir: Path) -> list[str]:
    return sorted(p.name for p in job_dir.glob("RELION_JOB_EXIT_*"))


# --- command line forms -------------------------------------------------------------------------

def test_relion_form_is_parsed() -> None:
    job = parse_job(["--o", JOB, "--in_parts", "Refine3D/job010/run_data.star", "--in_3dref", "map.mrc",
                     "--in_mask", "mask.mrc", "--mode", "train", "--steps", "200", "--pixel-size", "2.5",
                     "--gpu", "1", "--j", "4", "--pipeline_control", JOB])
    assert job.job_dir == Path(JOB) and job.mode == "train" and job.threads == 4
    assert job.particles == Path("Refine3D/job010/run_data.star") and job.mask == Path("mask.mrc")
    assert job.engine_values == {"steps": 200, "pixel_size": 2.5, "device": "cuda:1"}


def test_ccpem_pipeliner_form_is_parsed() -> None:
    """ccpem-pipeliner spells the map input --in_3Dref, puts --o last and leaves out --j."""
    job = parse_job(["--in_parts", "p.star", "--in_3Dref", "map.mrc", "--mode", "simulate", "--o", JOB])
    assert job.reference == Path("map.mrc") and job.threads == 1 and job.job_dir == Path(JOB)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--colour", "blue"], "unknown parameter --colour"),
        (["--mode", "simulat"], "invalid choice: 'simulat'"),
        (["--steps", "many"], "invalid int value: 'many'"),
        (["--gpu", "0", "--device", "cpu"], "either gpu or device"),
        (["--mode", "generate", "--model", "m"], "needs the parameter n"),
    ],
)
def test_bad_parameters_are_explained(argv: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(JobFailure, match=message):
        plan_steps(parse_job(["--o", str(tmp_path), *argv]))


def test_mode_all_with_n_plans_every_step_with_project_relative_paths(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    steps = plan_steps(parse_job(["--o", JOB, "--in_parts", "particles.star", "--in_3dref", "consensus_map.mrc",
                                  "--n", "8", "--steps", "10", "--device", "cpu"]))
    assert [s.engine_args[0] for s in steps] == ["simulate", "train", "apply", "generate"]
    for step in steps:
        if step.outputs:
            assert step.engine_args[step.engine_args.index("--project-dir") + 1] == "."
        assert step.engine_args[step.engine_args.index("--device") + 1] == "cpu"
    assert "--steps" in steps[1].engine_args and "--steps" not in steps[0].engine_args
    assert [n.name for s in steps for n in s.outputs] == [
        f"{JOB}pairs/sim.star", f"{JOB}pairs/raw.star", f"{JOB}refined/particles.star", f"{JOB}generated/particles.star"]


def test_rerun_job_resumes_training_from_its_checkpoint(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    argv = ["--o", JOB, "--in_parts", "particles.star", "--in_3dref", "consensus_map.mrc", "--steps", "800"]
    assert "--resume" not in plan_steps(parse_job(argv))[1].engine_args
    (project / JOB / "model").mkdir()
    (project / JOB / "model" / "checkpoint.pt").write_bytes(b"")
    assert "--resume" in plan_steps(parse_job(argv))[1].engine_args


# --- RELION versions and node labels ------------------------------------------------------------

@pytest.mark.parametrize(
    ("pipeline", "version", "type_column", "particles_type", "map_type"),
    [
        (PIPELINE_3_1, RelionVersion.V3_1, "_rlnPipeLineNodeType", "3", "6"),
        (PIPELINE_4_0, RelionVersion.V4_0, "_rlnPipeLineNodeTypeLabel", "ParticlesData.star.relion", "DensityMap.mrc"),
        (PIPELINE_5_0, RelionVersion.V5_0, "_rlnPipeLineNodeTypeLabel", "ParticleGroupMetadata.star.relion",
         "DensityMap.mrc"),
    ],
)
def test_node_labels_follow_the_project_version(tmp_path: Path, pipeline: str, version: RelionVersion,
                                                type_column: str, particles_type: str, map_type: str) -> None:
    (tmp_path / "default_pipeline.star").write_text(pipeline)
    assert detect_relion_version(tmp_path) is version
    nodes = [OutputNode("External/job001/refined/particles.star", NodeKind.PARTICLES),
             OutputNode("External/job001/map.mrc", NodeKind.MAP)]
    columns, rows = _read_loop(write_output_nodes(tmp_path, nodes, version))
    assert columns == ["_rlnPipeLineNodeName", type_column]
    assert rows[0] == ["External/job001/refined/particles.star", particles_type]
    assert rows[1] == ["External/job001/map.mrc", map_type]


def test_project_without_pipeline_gets_3_1_types(tmp_path: Path) -> None:
    assert detect_relion_version(tmp_path) is RelionVersion.V3_1


@pytest.mark.parametrize(
    ("pipeline", "ccpem_style", "particles_type"),
    [(PIPELINE_4_0, True, "ParticlesData.star.relion"), (PIPELINE_5_0, False, "ParticleGroupMetadata.star.relion")],
)
def test_simulate_job_registers_particles_with_the_project_labels(project: Path, pipeline: str, ccpem_style: bool,
                                                                  particles_type: str) -> None:
    (project / "default_pipeline.star").write_text(pipeline)
    inputs = ["--in_parts", "particles.star", "--mode", "simulate", "--max_particles", "4"]
    args = [*inputs, "--in_3Dref", "consensus_map.mrc", "--o", JOB] if ccpem_style else \
        ["--o", JOB, *inputs, "--in_3dref", "consensus_map.mrc", "--j", "1"]
    result = _run_launcher(project, *args)
    assert result.returncode == 0, result.stderr
    assert _markers(project / JOB) == [SUCCESS]
    columns, rows = _read_loop(project / JOB / "RELION_OUTPUT_NODES.star")
    assert rows == [[f"{JOB}pairs/sim.star", particles_type], [f"{JOB}pairs/raw.star", particles_type]]
    assert "@External/job001/pairs/sim.mrcs" in (project / JOB / "pairs" / "sim.star").read_text()


# --- failure and abort --------------------------------------------------------------------------

def test_missing_input_fails_with_one_readable_line(project: Path) -> None:
    result = _run_launcher(project, "--o", JOB, "--in_parts", "Refine3D/job010/run_data.star",
                           "--in_3dref", "consensus_map.mrc", "--mode", "simulate", "--j", "1")
    assert result.returncode == 1
    assert _markers(project / JOB) == [FAILURE]
    assert (project / JOB / "RELION_OUTPUT_NODES.star").is_file()
    assert result.stderr.strip().splitlines() == [
        "cryorefine-relion-external: error: simulate: input particles (in_parts) "
        "Refine3D/job010/run_data.star does not exist"]


def test_engine_failure_ends_the_job_with_the_engine_reason(project: Path) -> None:
    (project / "broken_map.mrc").write_text("not a map\n")
    result = _run_launcher(project, "--o", JOB, "--in_parts", "particles.star", "--in_3dref", "broken_map.mrc",
                           "--mode", "simulate")
    assert result.returncode == 1
    assert _markers(project / JOB) == [FAILURE]
    reason = result.stderr.strip().splitlines()
    assert len(reason) == 1 and "step simulate failed (exit status 2)" in reason[0] and "broken_map.mrc" in reason[0]
    assert "Traceback" not in result.stderr


def test_unknown_label_fails_before_any_work(project: Path) -> None:
    result = _run_launcher(project, "--o", JOB, "--in_parts", "particles.star", "--mode", "simulate", "--colour", "blue")
    assert _markers(project / JOB) == [FAILURE]
    assert "unknown parameter --colour; labels this job accepts: mode, model, n" in result.stderr
    assert not (project / JOB / "pairs").exists()


def test_launcher_without_any_python_still_ends_the_job(project: Path) -> None:
    result = _run_launcher(project, "--o", JOB, "--mode", "simulate",
                           env={"PATH": "/usr/bin:/bin", "CRYOREFINE_PYTHON": "/nonexistent/python"})
    assert result.returncode == 1
    assert _markers(project / JOB) == [FAILURE]
    assert "CRYOREFINE_PYTHON" in result.stderr


def test_launcher_finds_the_install_interpreter_without_cryorefine_python(project: Path) -> None:
    """With only the environment's bin folder on PATH, the console script's #! line names the Python."""
    console_script = shutil.which("cryorefine-relion-external", path=str(Path(sys.executable).parent))
    if console_script is None:
        pytest.skip("cryorefine-relion-external is not installed next to this Python")
    env = {"PATH": f"{Path(console_script).parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    result = _run_launcher(project, "--o", JOB, "--in_parts", "particles.star", "--in_3dref", "consensus_map.mrc",
                           "--mode", "simulate", "--max_particles", "2", env=env)
    assert result.returncode == 0, result.stderr
    assert _markers(project / JOB) == [SUCCESS]


def test_launcher_installed_in_site_packages_uses_its_environment_python(project: Path, tmp_path: Path) -> None:
    """Installed from a wheel, the launcher sits in <prefix>/lib/pythonX.Y/site-packages/relion_external/."""
    prefix = tmp_path / "env"
    package = prefix / "lib" / "python3.11" / "site-packages" / "relion_external"
    package.mkdir(parents=True)
    launcher = package / LAUNCHER.name
    shutil.copy2(LAUNCHER, launcher)
    (prefix / "bin").mkdir()
    (prefix / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (prefix / "bin" / "python").chmod(0o755)
    result = subprocess.run([str(launcher), "--o", JOB, "--mode", "simulate", "--colour", "blue"], cwd=project,
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert "cryorefine-relion-external: error: unknown parameter --colour" in result.stderr  # the wrapper ran
    assert _markers(project / JOB) == [FAILURE]


def _engine_processes(project: Path) -> list[int]:
    """Live `cryorefine` engine processes working in `project` (their current directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
                cwd = (proc / "cwd").resolve()
            except OSError:
                continue
            if b"cryorefine.cli" in cmdline and cwd == project.resolve():
                found.append(int(proc.name))
    return found


def _stop_a_long_training_run(project: Path, stop: Callable[[subprocess.Popen, Path], None]) -> tuple[float, str]:
    """Simulate pairs, start a real `train` job of a million steps, stop it with `stop` once it trains.

    Returns the seconds the job took to end after `stop`, and its stderr (run.err).
    """
    simulate = _run_launcher(project, "--o", JOB, "--in_parts", "particles.star", "--in_3dref", "consensus_map.mrc",
                             "--mode", "simulate")
    assert simulate.returncode == 0, simulate.stderr
    train_job = project / "External/job002/"
    train_job.mkdir()
    process = subprocess.Popen(
        [str(LAUNCHER), "--o", "External/job002/", "--in_parts", f"{JOB}pairs/sim.star", "--mode", "train",
         "--steps", "1000000", "--batch_size", "4", "--j", "1"],
        cwd=project, env=_launcher_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not _engine_processes(project) or not (train_job / "model").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        time.sleep(1.0)  # let it train a few steps
        stop(process, train_job)
        asked = time.monotonic()
        _, err = process.communicate(timeout=30)
        stopped_after = time.monotonic() - asked
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert _markers(train_job) == [ABORTED]
    assert (train_job / "RELION_OUTPUT_NODES.star").is_file()
    assert _engine_processes(project) == []
    assert _markers(project / JOB) == [SUCCESS]
    return stopped_after, err


def test_abort_request_stops_a_long_training_run(project: Path) -> None:
    """RELION's Abort button creates RELION_JOB_ABORT_NOW; a real, long `train` must stop within seconds."""
    stopped_after, err = _stop_a_long_training_run(
        project, lambda process, job_dir: (job_dir / "RELION_JOB_ABORT_NOW").touch())
    assert stopped_after < 5, stopped_after
    assert "aborted by External/job002/RELION_JOB_ABORT_NOW during step train" in err
    assert not (project / "External/job002/RELION_JOB_ABORT_NOW").exists()


def test_queue_cancel_sigterm_stops_the_engine_and_ends_the_job(project: Path) -> None:
    """A queue's cancel (SIGTERM to the job) must not leave the engine running or the job 'Running'."""
    stopped_after, err = _stop_a_long_training_run(project, lambda process, job_dir: process.terminate())
    assert stopped_after < 15, stopped_after
    assert "stopped by signal SIGTERM" in err


# --- a real RELION 3.1 pipeline ---------------------------------------------------------------------

def _pipeliner(project: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """relion_pipeliner; on failure it can leave .relion_lock behind, which would block later calls for 2 min."""
    try:
        result = subprocess.run(["relion_pipeliner", *args], cwd=project, env=_launcher_env(PATH=os.environ["PATH"]),
                                capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(project / ".relion_lock", ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.skipif(shutil.which("relion_pipeliner") is None, reason="RELION 3.1 (relion_pipeliner) is not installed")
def test_relion_3_1_pipeliner_runs_the_job_and_registers_usable_particles(project: Path) -> None:
    shutil.rmtree(project / "External")
    options = ";".join([
        f"fn_exe == {LAUNCHER}", "in_part == particles.star", "in_3dref == consensus_map.mrc",
        "param1_label == mode", "param1_value == all", "param2_label == steps", "param2_value == 10",
        "param3_label == batch_size", "param3_value == 4", "param4_label == device", "param4_value == cpu",
        "param5_label == n", "param5_value == 6",
    ]) + ";"
    _pipeliner(project, "--addJob", "External", "--addJobOptions", options)
    _pipeliner(project, "--RunJobs", JOB, "--sec_wait_after", "1")
    job_dir = project / JOB
    assert _markers(job_dir) == [SUCCESS], (job_dir / "run.err").read_text()
    assert (job_dir / "run.err").read_text() == ""
    assert f"--pipeline_control {JOB}" in (job_dir / "note.txt").read_text()  # RELION added it; we accepted it
    assert "job finished: RELION_JOB_EXIT_SUCCESS" in (job_dir / "run.out").read_text()

    pipeline = project / "default_pipeline.star"
    assert [JOB, "None", "99", "2"] in _pipeline_table(pipeline, "pipeline_processes")  # 2 = Succeeded
    nodes = _pipeline_table(pipeline, "pipeline_nodes")
    for star in ("pairs/sim.star", "pairs/raw.star", "refined/particles.star", "generated/particles.star"):
        assert [f"{JOB}{star}", "3"] in nodes
    assert [JOB, f"{JOB}refined/particles.star"] in _pipeline_table(pipeline, "pipeline_output_edges")
    assert (job_dir / "model" / "plots" / "panels.png").is_file()

    for star, count in (("refined/particles.star", 10), ("pairs/sim.star", 10), ("generated/particles.star", 6)):
        node = f"{JOB}{star}"
        handled = subprocess.run(["relion_star_handler", "--i", node, "--o", "selected.star", "--select",
                                  "rlnAngleTilt", "--minval", "0", "--maxval", "180"],
                                 cwd=project, capture_output=True, text=True, timeout=60)
        assert handled.returncode == 0 and f"with {count} item(s)" in handled.stdout, handled.stdout + handled.stderr
        reconstruct = subprocess.run(["relion_reconstruct", "--i", node, "--o", "reconstruction.mrc", "--ctf"],
                                     cwd=project, capture_output=True, text=True, timeout=120)
        assert reconstruct.returncode == 0 and (project / "reconstruction.mrc").stat().st_size > 48**3 * 4, \
            reconstruct.stdout + reconstruct.stderr
        (project / "reconstruction.mrc").unlink()
