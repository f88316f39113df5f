"""The RELION External job: argument forms, node labels per RELION version, abort, failure, and real
runs through RELION 3.1's own `relion_pipeliner` (particles; a scene, its extraction and its translation)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import mrcfile
import numpy as np
import pytest

from relion_external.nodes import (
    NodeKind,
    OutputNode,
    RelionVersion,
    detect_relion_version,
    write_output_nodes,
)
from cryorefine.io.star import read_particle_star, read_star_tables
from relion_external.wrapper import ABORTED, FAILURE, SUCCESS, JobFailure, parse_job, plan_steps
from tests.conftest import REAL_MICROGRAPH, REPO, TRPV1

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

REAL_MICROGRAPHS_STAR = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographPixelSize #3
_rlnVoltage #4
_rlnSphericalAberration #5
_rlnAmplitudeContrast #6
opticsGroup1 1 4.0032 300 2.7 0.1

# version 30001

data_micrographs

loop_
_rlnMicrographName #1
_rlnOpticsGroup #2
epu.mrc 1
"""
# A tiny scene: 2 micrographs of 256 px at the map's 4.88 Å/px (the default), 5 TRPV1 each (about 5 s on one
# CPU), with optics other than the engine's defaults.
SCENE_PARAMETERS = ("species", "consensus_map.mrc:5", "size", "256", "n_micrographs", "2", "defocus", "1.5 2.5",
                    "seed", "3", "device", "cpu", "voltage", "200", "cs", "2.0", "amplitude_contrast", "0.07")


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
    source = TRPV1
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
        (["--mode", "scene"], "mode scene needs the parameter species"),
        (["--mode", "scene", "--species", "absent.mrc:3"], "scene: species file absent.mrc does not exist"),
        (["--mode", "scene", "--defocus", "2.5", "1.5"], "0 <= MIN <= MAX"),
        (["--mode", "scene", "--defocus", "near", "far"], "defocus must be MIN MAX in µm"),
        (["--mode", "translate", "--method", "gan"], "invalid choice: 'gan'"),
        (["--mode", "translate"], "translate needs real micrographs \\(in_mics\\)"),
        # a label whose value was left empty: RELION passes the next label right after it
        (["--device", "--j", "1"], "parameter device has no value: fill in its value or clear its label"),
        (["--species", "--j", "1"], "parameter species has no value"),
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
        if any(node.kind is NodeKind.PARTICLES for node in step.outputs):  # STAR files name their stacks
            assert step.engine_args[step.engine_args.index("--project-dir") + 1] == "."
        assert step.engine_args[step.engine_args.index("--device") + 1] == "cpu"
    assert "--steps" in steps[1].engine_args and "--steps" not in steps[0].engine_args
    assert [(n.name, n.kind) for s in steps for n in s.outputs] == [
        (f"{JOB}pairs/sim.star", NodeKind.PARTICLES), (f"{JOB}pairs/raw.star", NodeKind.PARTICLES),
        (f"{JOB}model/config.json", NodeKind.MODEL), (f"{JOB}applied/particles.star", NodeKind.PARTICLES),
        (f"{JOB}generated/particles.star", NodeKind.PARTICLES), (f"{JOB}generated/clean.star", NodeKind.PARTICLES)]


def test_mode_refine_is_now_apply_and_still_runs_with_a_line_saying_so(caplog) -> None:
    """Issue 15: 'refine' read as RELION's 3D refinement; the old name works for one release."""
    job = parse_job(["--o", JOB, "--mode", "refine", "--model", "m"])
    assert job.mode == "apply"
    assert "mode refine is now called apply; the old name goes in the next release" in caplog.text


def test_a_model_is_found_from_its_node_its_folder_or_its_job(project: Path, monkeypatch) -> None:
    """Issue 17: the train job registers model/config.json; a user may paste that node, the folder or the job."""
    monkeypatch.chdir(project)
    train_job = Path("External/job002")
    (project / train_job / "model").mkdir(parents=True)
    argv = ["--o", JOB, "--mode", "apply", "--in_parts", "pairs_job/sim.star"]
    for name in ("sim.star", "raw.star"):
        (project / "pairs_job").mkdir(exist_ok=True)
        (project / "pairs_job" / name).write_text("")
    with pytest.raises(JobFailure, match="External/job002 is not a trained model: give a train job's model node"):
        plan_steps(parse_job([*argv, "--model", str(train_job)]))
    (project / train_job / "model" / "config.json").write_text("{}")
    for given in (train_job / "model" / "config.json", train_job / "model", train_job):
        (step,) = plan_steps(parse_job([*argv, "--model", str(given)]))
        assert step.engine_args[step.engine_args.index("--model") + 1] == str(train_job / "model")


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/version").exists(),
                    reason="this machine has an NVIDIA driver")
@pytest.mark.parametrize(("request_gpu", "device"), [(("--gpu", "0"), "cuda:0"), (("--device", "cuda"), "cuda")])
def test_a_gpu_request_on_a_machine_without_one_fails_before_any_work(project: Path, request_gpu, device) -> None:
    """Issue 17: as Scipion's form refuses Use GPU there, with the reason where the user looks (run.err)."""
    result = _run_launcher(project, "--o", JOB, "--in_parts", "particles.star", "--in_3dref", "consensus_map.mrc",
                           "--mode", "simulate", *request_gpu)
    assert result.returncode == 1 and _markers(project / JOB) == [FAILURE]
    (line,) = result.stderr.strip().splitlines()
    assert f"device {device} asks for a GPU but this machine has no NVIDIA GPU driver" in line
    assert "leave gpu and device empty" in line and not (project / JOB / "pairs").exists()


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
    nodes = [OutputNode("External/job001/applied/particles.star", NodeKind.PARTICLES),
             OutputNode("External/job001/map.mrc", NodeKind.MAP)]
    columns, rows = _read_loop(write_output_nodes(tmp_path, nodes, version))
    assert columns == ["_rlnPipeLineNodeName", type_column]
    assert rows[0] == ["External/job001/applied/particles.star", particles_type]
    assert rows[1] == ["External/job001/map.mrc", map_type]


def test_a_4_0_project_whose_only_job_has_no_input_nodes_is_4_0(tmp_path: Path) -> None:
    """A scene job as the first job of a new RELION 4.0 project: the pipeline lists the running job (with 4.0's
    process type label) but has no nodes table yet; integer node types would reach 4.0 without a type label."""
    only_the_running_job = PIPELINE_4_0.split("# version 30001\n\ndata_pipeline_nodes")[0].replace(
        "Import/job001/       None relion.importmovies  Succeeded", "External/job001/       None relion.external  Running")
    assert "_rlnPipeLineNodeTypeLabel" not in only_the_running_job
    (tmp_path / "default_pipeline.star").write_text(only_the_running_job)
    assert detect_relion_version(tmp_path) is RelionVersion.V4_0
    (tmp_path / "default_pipeline.star").write_text(only_the_running_job.replace("# version 30001", "# version 50001"))
    assert detect_relion_version(tmp_path) is RelionVersion.V5_0


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
    # the job's threads (--j, or one when left out) reach the engine
    assert "cryorefine.cli simulate --threads 1 --particles" in result.stdout
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
    for star in ("pairs/sim.star", "pairs/raw.star", "applied/particles.star", "generated/particles.star",
                 "generated/clean.star"):
        assert [f"{JOB}{star}", "3"] in nodes
    assert [f"{JOB}model/config.json", "15"] in nodes  # the model, for the next job's `model` parameter
    assert [JOB, f"{JOB}applied/particles.star"] in _pipeline_table(pipeline, "pipeline_output_edges")
    assert (job_dir / "model" / "plots" / "panels.png").is_file()

    for star, count in (("applied/particles.star", 10), ("pairs/sim.star", 10), ("generated/particles.star", 6),
                        ("generated/clean.star", 6)):
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


# --- micrographs: scene and translate ---------------------------------------------------------------

def _scene_argv(*extra: str) -> list[str]:
    """The tiny scene as the RELION GUI passes it (a value with a space arrives as two words)."""
    pairs = zip(SCENE_PARAMETERS[::2], SCENE_PARAMETERS[1::2])
    return ["--o", JOB, "--mode", "scene", *(word for label, value in pairs for word in (f"--{label}", *value.split())),
            *extra]


def _add_real_micrographs(project: Path) -> None:
    (project / "epu.mrc").symlink_to(REAL_MICROGRAPH)
    (project / "real_micrographs.star").write_text(REAL_MICROGRAPHS_STAR)


def test_scene_parameters_are_read_in_the_gui_and_the_list_forms(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    common = ["--o", JOB, "--mode", "scene", "--pixel-size", "4.88", "--seed", "3", "--n_micrographs", "2"]
    gui = parse_job([*common, "--species", "consensus_map.mrc:5,consensus_map.mrc:2:small", "--defocus", "1.5", "2.5"])
    listed = parse_job([*common, "--species", "consensus_map.mrc:5", "consensus_map.mrc:2:small",
                        "--defocus", "1.5,2.5"])
    for job in (gui, listed):
        (step,) = plan_steps(job)
        assert step.engine_args == [
            "scene", "--species", "consensus_map.mrc:5", "--species", "consensus_map.mrc:2:small",
            "--out", f"{JOB}scene", "--defocus", "1.5", "2.5", "--pixel-size", "4.88", "--seed", "3",
            "--n-micrographs", "2"]


@pytest.mark.parametrize(
    ("version", "coordinates", "types"),
    [
        (RelionVersion.V3_1, "coords_suffix_cryorefine.star", ["1", "2"]),
        (RelionVersion.V4_0, "coordinates.star", ["MicrographsData.star.relion", "MicrographsCoords.star.relion"]),
        (RelionVersion.V5_0, "coordinates.star",
         ["MicrographGroupMetadata.star.relion", "MicrographCoordsGroup.star.relion"]),
    ],
)
def test_micrograph_and_coordinate_nodes_follow_the_project_version(project: Path, monkeypatch, version: RelionVersion,
                                                                    coordinates: str, types: list[str]) -> None:
    monkeypatch.chdir(project)
    (step,) = plan_steps(parse_job(_scene_argv()), version)
    assert [node.name for node in step.outputs] == [f"{JOB}micrographs.star", f"{JOB}{coordinates}"]
    _, rows = _read_loop(write_output_nodes(project, step.outputs, version))
    assert [row[1] for row in rows] == types


def test_translate_trains_on_the_real_micrographs_then_translates_the_scene(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    _add_real_micrographs(project)
    (project / "External/job002/scene").mkdir(parents=True)
    (project / "External/job002/scene/scene.json").write_text("{}")
    argv = ["--o", JOB, "--mode", "translate", "--in_mics", "real_micrographs.star", "--scene", "External/job002/",
            "--steps", "4", "--seed", "1"]
    train, apply = plan_steps(parse_job(argv))
    assert train.engine_args == ["translate", "train", "--scenes", "External/job002/scene", "--real", "epu.mrc",
                                 "--out", f"{JOB}translator", "--steps", "4", "--seed", "1"]
    assert apply.engine_args == ["translate", "apply", "--model", f"{JOB}translator", "--scenes",
                                 "External/job002/scene", "--out", f"{JOB}translated", "--seed", "1"]
    assert not train.outputs and [node.name for node in apply.outputs] == [
        f"{JOB}micrographs.star", f"{JOB}coords_suffix_cryorefine.star"]
    # the engine's default method is not spelt out; another one is
    assert plan_steps(parse_job([*argv, "--method", "contrastive"]))[0].engine_args == train.engine_args
    assert plan_steps(parse_job([*argv, "--method", "diffusion"]))[0].engine_args[2:4] == ["--method", "diffusion"]
    # the device reaches both steps, as in every other mode
    for step in plan_steps(parse_job([*argv, "--device", "cpu"])):
        assert step.engine_args[step.engine_args.index("--device") + 1] == "cpu", step.engine_args
    with pytest.raises(JobFailure, match="scene External/job009 holds no scene.json"):
        plan_steps(parse_job([*argv, "--scene", "External/job009/"]))
    (project / "real_micrographs.star").write_text(REAL_MICROGRAPHS_STAR.replace("rlnMicrographName", "rlnImageName"))
    with pytest.raises(JobFailure, match="translate: real_micrographs.star: no rlnMicrographName column"):
        plan_steps(parse_job(argv))


def test_scene_job_in_a_relion_5_project_lists_its_coordinate_files(project: Path) -> None:
    (project / "default_pipeline.star").write_text(PIPELINE_5_0)
    result = _run_launcher(project, *_scene_argv("--j", "1"))
    assert result.returncode == 0, result.stderr
    columns, rows = _read_loop(project / JOB / "coordinates.star")
    assert columns == ["_rlnMicrographName", "_rlnMicrographCoordinates"]
    assert rows == [[f"{JOB}scene/micrograph_{i:03d}.mrc", f"{JOB}scene/micrograph_{i:03d}_cryorefine.star"]
                    for i in range(2)]
    _, nodes = _read_loop(project / JOB / "RELION_OUTPUT_NODES.star")
    assert nodes == [[f"{JOB}micrographs.star", "MicrographGroupMetadata.star.relion"],
                     [f"{JOB}coordinates.star", "MicrographCoordsGroup.star.relion"]]
    assert not (project / JOB / "coords_suffix_cryorefine.star").exists()


def _external_job_options(*parameters: str, **inputs: str) -> str:
    """`--addJobOptions` text for the cryorefine External job: inputs by RELION name, then label/value pairs."""
    options = [f"fn_exe == {LAUNCHER}", *(f"{name} == {value}" for name, value in inputs.items())]
    for number, (label, value) in enumerate(zip(parameters[::2], parameters[1::2]), start=1):
        options += [f"param{number}_label == {label}", f"param{number}_value == {value}"]
    return ";".join(options) + ";"


def _star_handler_count(project: Path, star: str) -> str:
    handled = subprocess.run(["relion_star_handler", "--i", star, "--o", "selected.star", "--select", "rlnDefocusU",
                              "--minval", "0", "--maxval", "1e9"], cwd=project, capture_output=True, text=True,
                             timeout=60)
    assert handled.returncode == 0, handled.stdout + handled.stderr
    return handled.stdout


@pytest.mark.skipif(shutil.which("relion_pipeliner") is None, reason="RELION 3.1 (relion_pipeliner) is not installed")
def test_relion_3_1_pipeliner_builds_a_scene_extracts_its_particles_and_translates_it(project: Path) -> None:
    shutil.rmtree(project / "External")
    _add_real_micrographs(project)
    _pipeliner(project, "--addJob", "External", "--addJobOptions", _external_job_options("mode", "scene",
                                                                                          *SCENE_PARAMETERS))
    _pipeliner(project, "--RunJobs", JOB, "--sec_wait_after", "1")
    job_dir = project / JOB
    assert _markers(job_dir) == [SUCCESS], (job_dir / "run.err").read_text()
    pipeline = project / "default_pipeline.star"
    assert [JOB, "None", "99", "2"] in _pipeline_table(pipeline, "pipeline_processes")
    nodes = _pipeline_table(pipeline, "pipeline_nodes")
    assert [f"{JOB}micrographs.star", "1"] in nodes and [f"{JOB}coords_suffix_cryorefine.star", "2"] in nodes
    assert "Written: selected.star with 2 item(s)" in _star_handler_count(project, f"{JOB}micrographs.star")
    optics = read_star_tables(job_dir / "micrographs.star")["optics"].iloc[0]  # the map's pixel size, the optics given
    assert (float(optics.rlnMicrographPixelSize), float(optics.rlnVoltage), float(optics.rlnSphericalAberration),
            float(optics.rlnAmplitudeContrast)) == pytest.approx((4.88, 200.0, 2.0, 0.07))

    # RELION's own Extract finds every true coordinate and gives each particle its micrograph's defocus
    _pipeliner(project, "--addJob", "Extract", "--addJobOptions",
               f"star_mics == {JOB}micrographs.star;coords_suffix == {JOB}coords_suffix_cryorefine.star;"
               "extract_size == 48;do_invert == Yes;do_norm == Yes;bg_diameter == 40;")
    _pipeliner(project, "--RunJobs", "Extract/job002/", "--sec_wait_after", "1")
    assert _markers(project / "Extract/job002") == [SUCCESS], (project / "Extract/job002/run.err").read_text()
    extracted = read_particle_star(project / "Extract/job002/particles.star").particles
    truth = [next(iter(read_star_tables(job_dir / f"scene/coords_{i:03d}.star").values())) for i in range(2)]
    assert len(extracted) == sum(len(table) for table in truth) == 10
    for index, table in enumerate(truth):
        rows = extracted[extracted.rlnMicrographName == f"{JOB}scene/micrograph_{index:03d}.mrc"]
        np.testing.assert_allclose(rows.rlnCoordinateX, table.rlnCoordinateX, atol=1e-5)
        np.testing.assert_allclose(rows.rlnCoordinateY, table.rlnCoordinateY, atol=1e-5)
        np.testing.assert_allclose(rows.rlnDefocusU.astype(float), table.rlnDefocusU, atol=1e-3)
        np.testing.assert_allclose(rows.rlnAngleTilt.astype(float), table.rlnAngleTilt, atol=1e-5)

    translate_job = "External/job003/"
    _pipeliner(project, "--addJob", "External", "--addJobOptions", _external_job_options(
        "mode", "translate", "scene", JOB, "steps", "4", "batch_size", "2", "tile", "32", "base_channels", "4",
        "depth", "2", in_mic="real_micrographs.star"))
    _pipeliner(project, "--RunJobs", translate_job, "--sec_wait_after", "1")
    assert _markers(project / translate_job) == [SUCCESS], (project / translate_job / "run.err").read_text()
    nodes = _pipeline_table(pipeline, "pipeline_nodes")
    assert [f"{translate_job}micrographs.star", "1"] in nodes
    assert [f"{translate_job}coords_suffix_cryorefine.star", "2"] in nodes
    assert ["real_micrographs.star", translate_job] in _pipeline_table(pipeline, "pipeline_input_edges")
    assert "Written: selected.star with 2 item(s)" in _star_handler_count(project, f"{translate_job}micrographs.star")
    for index in range(2):
        with mrcfile.open(project / translate_job / f"translated/translated_{index:03d}.mrc") as handle:
            assert handle.data.shape == (256, 256) and np.isfinite(handle.data).all()
        assert (project / translate_job / f"translated/translated_{index:03d}_cryorefine.star").read_text() == (
            job_dir / f"scene/micrograph_{index:03d}_cryorefine.star").read_text()
