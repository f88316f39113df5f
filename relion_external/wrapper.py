"""Run cryorefine as a RELION External job.

RELION (3.1, 4.0, 5.0) runs, from the project directory:

    <executable> --o External/jobNNN/ --in_parts run_data.star --in_3dref map.mrc [--in_mask mask.mrc]
                 [--in_mics micrographs.star] [--<label> <value>]... --j THREADS
                 [--pipeline_control External/jobNNN/]

`--mode` picks the steps: simulate, train, apply (the trained model on the simulated particles),
generate, or all (simulate, train, apply, and generate when `--n` is given) for particles; scene (synthetic micrographs from `--species`) or
translate (train on a scene job's micrographs and the real `--in_mics`, then translate the scene)
for micrographs. Each step calls the `cryorefine` command line in a child process;
its log goes to run.out, a one-line reason for a failure to run.err. The job always ends with
RELION_OUTPUT_NODES.star and then exactly one of RELION_JOB_EXIT_SUCCESS / _FAILURE / _ABORTED,
and stops within about a second when RELION's Abort button creates RELION_JOB_ABORT_NOW.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Callable, Sequence

from cryorefine.artifacts import ModelFolder, PairsFolder, ParticlesFolder, SceneFolder, TranslatedFolder
from cryorefine.device import NO_GPU_REASON, host_has_cuda
from cryorefine.errors import InputError
from cryorefine.unpaired.config import METHODS
from relion_external.micrographs import (
    micrograph_nodes,
    read_micrograph_names,
    write_micrograph_nodes,
)
from relion_external.nodes import (
    NodeKind,
    OutputNode,
    RelionVersion,
    detect_relion_version,
    write_output_nodes,
)

log = logging.getLogger(__name__)

PROG = "cryorefine-relion-external"
SUCCESS, FAILURE, ABORTED = "RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE", "RELION_JOB_EXIT_ABORTED"
ABORT_REQUEST = "RELION_JOB_ABORT_NOW"
ABORT_POLL_SECONDS = 0.5
TERMINATE_GRACE_SECONDS = 10.0
PROGRESS_INTERVAL_SECONDS = 5
MODES = ("simulate", "train", "apply", "generate", "all", "scene", "translate")
# Modes renamed; the old name still runs for one release, with a line in run.out. ("refine" read as
# RELION's 3D refinement.)
RENAMED_MODES = {"refine": "apply"}
TRANSLATE_METHODS = METHODS  # the engine's list (cryorefine.unpaired.config); the first is its default


class JobFailure(Exception):
    """The job cannot run or a step failed; the message is one line for run.err."""


class JobAborted(Exception):
    """The user (RELION's Abort button) or the queue asked the job to stop."""


@dataclass(frozen=True)
class EngineParameter:
    """A RELION `--<label> <value>` pair passed on to some `cryorefine` commands as `flag value`."""

    label: str
    flag: str
    commands: tuple[str, ...]
    type: Callable[[str], object]
    help: str


ENGINE_PARAMETERS = (
    EngineParameter("steps", "--steps", ("train", "translate train"), int, "training steps"),
    EngineParameter("batch_size", "--batch-size", ("train", "translate train"), int, "training batch size"),
    EngineParameter("device", "--device", ("simulate", "train", "apply", "generate", "scene", "translate train",
                                           "translate apply"), str,
                    "cpu, cuda or cuda:N"),
    EngineParameter("box", "--box", ("simulate",), int, "box size of the simulated pairs (px)"),
    EngineParameter("pixel_size", "--pixel-size", ("simulate", "scene"), float,
                    "pixel size of the pairs or of the scene (Å)"),
    EngineParameter("max_particles", "--max-particles", ("simulate",), int, "simulate at most this many"),
    EngineParameter("seed", "--seed", ("simulate", "train", "apply", "generate", "scene", "translate train",
                                       "translate apply"), int, "random seed"),
    EngineParameter("bfactor", "--bfactor", ("simulate",), float, "B-factor applied to the map (Å²)"),
    EngineParameter("mask_diameter", "--mask-diameter", ("simulate",), float, "circular mask diameter (Å)"),
    EngineParameter("noise", "--noise", ("apply", "generate"), str,
                    "gan (the default of apply), coloured (the default of generate) or another baseline"),
    EngineParameter("size", "--size", ("scene",), int, "micrograph size (px)"),
    EngineParameter("n_micrographs", "--n-micrographs", ("scene",), int, "micrographs to build"),
    EngineParameter("dose", "--dose", ("scene",), float, "electrons per Å² (0: no noise)"),
    EngineParameter("placement", "--placement", ("scene",), str, "uniform, clustered or boundary"),
    EngineParameter("ice_thickness", "--ice-thickness", ("scene",), float, "mean ice thickness (Å)"),
    EngineParameter("voltage", "--voltage", ("scene",), float, "acceleration voltage of the scene (kV)"),
    EngineParameter("cs", "--cs", ("scene",), float, "spherical aberration of the scene (mm)"),
    EngineParameter("amplitude_contrast", "--amplitude-contrast", ("scene",), float,
                    "amplitude contrast of the scene (fraction)"),
    EngineParameter("tile", "--tile", ("translate train",), int, "training tile size (px)"),
    EngineParameter("base_channels", "--base-channels", ("translate train",), int, "network base channels"),
    EngineParameter("depth", "--depth", ("translate train",), int, "network depth"),
)


@dataclass(frozen=True)
class Step:
    """One `cryorefine` command and the RELION nodes it makes."""

    name: str
    engine_args: list[str]
    outputs: list[OutputNode] = field(default_factory=list)
    # Writes the RELION files the outputs name from what the engine wrote (micrographs, coordinates).
    write_outputs: Callable[[], None] | None = None


@dataclass(frozen=True)
class JobRequest:
    job_dir: Path
    mode: str
    particles: Path | None
    reference: Path | None
    mask: Path | None
    model: Path | None
    n: int | None
    threads: int
    engine_values: dict[str, object]
    micrographs: Path | None
    species: list[str]
    defocus: tuple[float, float] | None
    scene: Path | None
    method: str | None


class _RaisingParser(argparse.ArgumentParser):
    """argparse that reports problems as a JobFailure instead of exiting, so FAILURE gets written."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # A label whose value was left empty in the GUI arrives as `--label` followed by the next label.
        empty = re.fullmatch(r"argument --(\w+): expected (?:one|at least one) argument", message)
        if empty:
            raise JobFailure(f"parameter {empty.group(1)} has no value: fill in its value or clear its label")
        raise JobFailure(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _RaisingParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                            allow_abbrev=False)
    parser.add_argument("--o", dest="job_dir", required=True, type=Path, help="job directory (External/jobNNN/)")
    parser.add_argument("--in_parts", dest="particles", type=Path, help="refined particles (Refine3D run_data.star)")
    parser.add_argument("--in_3dref", "--in_3Dref", dest="reference", type=Path, help="consensus map")
    parser.add_argument("--in_mask", dest="mask", type=Path, help="mask for the simulation")
    parser.add_argument("--in_mics", dest="micrographs", type=Path, help="real micrographs (translate)")
    parser.add_argument("--j", dest="threads", type=int, default=1, help="CPU threads for the engine")
    parser.add_argument("--pipeline_control", help="added by RELION; not used")
    parser.add_argument("--mode", choices=(*MODES, *RENAMED_MODES), default="all", help="steps to run (default: all)")
    parser.add_argument("--model", type=Path, help="an earlier train job's model: its model node "
                        "(External/jobNNN/model/config.json), its model folder or the job's folder (apply, generate)")
    parser.add_argument("--n", type=int, help="number of particles to generate")
    parser.add_argument("--gpu", help="GPU number, shorthand for --device cuda:N")
    parser.add_argument("--species", nargs="+", default=[],
                        help="scene: maps or atomic models as PATH:COPIES[:NAME], separated by commas or spaces")
    parser.add_argument("--defocus", nargs="+", help="scene: defocus range in µm, MIN MAX (or MIN,MAX)")
    parser.add_argument("--scene", type=Path, help="translate: a scene job's folder")
    parser.add_argument("--method", choices=TRANSLATE_METHODS, help="translate: contrastive (default) or diffusion")
    for parameter in ENGINE_PARAMETERS:
        parser.add_argument(f"--{parameter.label}", type=parameter.type, help=parameter.help)
    return parser


def _normalise_labels(argv: Sequence[str]) -> list[str]:
    """Accept `--pixel-size` for `--pixel_size`: GUI users type either."""
    return ["--" + token[2:].replace("-", "_") if token.startswith("--") else token for token in argv]


def parse_job(argv: Sequence[str]) -> JobRequest:
    parser = build_parser()
    args, unknown = parser.parse_known_args(_normalise_labels(argv))
    if unknown:
        labels = [token for token in unknown if token.startswith("-")] or unknown
        accepted = ", ".join(("mode", "model", "n", "gpu", "species", "defocus", "scene", "method",
                              *(p.label for p in ENGINE_PARAMETERS)))
        raise JobFailure(f"unknown parameter {' '.join(labels)}; labels this job accepts: {accepted}")
    engine_values = {p.label: getattr(args, p.label) for p in ENGINE_PARAMETERS if getattr(args, p.label) is not None}
    if args.gpu is not None:
        if "device" in engine_values:
            raise JobFailure("give either gpu or device, not both")
        engine_values["device"] = f"cuda:{args.gpu}" if args.gpu.isdigit() else "cuda"
    if args.n is not None and args.n < 1:
        raise JobFailure(f"n must be at least 1, got {args.n}")
    if args.threads < 1:
        raise JobFailure(f"--j must be at least 1, got {args.threads}")
    species = [spec for token in args.species for spec in token.split(",") if spec]
    mode = RENAMED_MODES.get(args.mode, args.mode)
    if mode != args.mode:
        log.warning("mode %s is now called %s; the old name goes in the next release", args.mode, mode)
    return JobRequest(
        job_dir=args.job_dir,
        mode=mode,
        particles=args.particles,
        reference=args.reference,
        mask=args.mask,
        model=args.model,
        n=args.n,
        threads=args.threads,
        engine_values=engine_values,
        micrographs=args.micrographs,
        species=species,
        defocus=None if args.defocus is None else _defocus_range(args.defocus),
        scene=args.scene,
        method=args.method,
    )


def _defocus_range(tokens: list[str]) -> tuple[float, float]:
    """(MIN, MAX) in µm from `1.0 2.5` (two words, as the RELION GUI passes them) or `1.0,2.5`."""
    words = " ".join(tokens).replace(",", " ").split()
    try:
        low, high = (float(word) for word in words)
    except ValueError:
        raise JobFailure(f"defocus must be MIN MAX in µm, e.g. '1.0 2.5'; got {' '.join(tokens)!r}") from None
    if not 0 <= low <= high:
        raise JobFailure(f"defocus range must satisfy 0 <= MIN <= MAX, got {low} {high}")
    return low, high


def _require_file(path: Path | None, what: str, step: str) -> Path:
    if path is None:
        raise JobFailure(f"{step} needs {what}")
    if not path.is_file():
        raise JobFailure(f"{step}: {what} {path} does not exist")
    return path


def _engine_options(job: JobRequest, command: str) -> list[str]:
    options: list[str] = []
    for parameter in ENGINE_PARAMETERS:
        if command in parameter.commands and parameter.label in job.engine_values:
            options += [parameter.flag, str(job.engine_values[parameter.label])]
    return options


def _pairs_dir(job: JobRequest, simulated_here: bool) -> Path:
    """This job's pairs, or an earlier simulate job's pairs given as the input particles (its sim.star)."""
    if simulated_here:
        return job.job_dir / "pairs"
    own = job.job_dir / "pairs"
    if PairsFolder.holds_pairs(own):
        return own
    if job.particles is not None and PairsFolder.holds_pairs(job.particles.parent):
        return job.particles.parent
    raise JobFailure(
        f"mode {job.mode} needs simulated pairs: run mode simulate first and give its pairs/sim.star as the input particles"
    )


def _given_model(model: Path) -> Path:
    """The model folder from what a user copies out of RELION: the model node (its config.json), the model
    folder, or the train job's folder."""
    for folder in (model.parent if model.name == ModelFolder.CONFIG else model, model / "model"):
        if (folder / ModelFolder.CONFIG).is_file():
            return folder
    raise JobFailure(f"model {model} is not a trained model: give a train job's model node "
                     f"(External/jobNNN/model/{ModelFolder.CONFIG}), its model folder or the job's folder")


def _model_dir(job: JobRequest, trained_here: bool) -> Path:
    if job.model is not None:
        return _given_model(job.model)
    if trained_here or (job.job_dir / "model").is_dir():
        return job.job_dir / "model"
    raise JobFailure(f"mode {job.mode} needs a trained model: set the parameter model to a train job's model folder")


def _scene_step(job: JobRequest, version: RelionVersion) -> Step:
    if not job.species:
        raise JobFailure("mode scene needs the parameter species, e.g. map.mrc:20,model.pdb:10")
    for spec in job.species:
        _require_file(Path(spec.split(":")[0]), "species file", "scene")
    scene_dir = job.job_dir / "scene"
    defocus = ["--defocus", *map(str, job.defocus)] if job.defocus else []
    return Step(
        "scene",
        ["scene", *(word for spec in job.species for word in ("--species", spec)), "--out", str(scene_dir),
         *defocus, *_engine_options(job, "scene")],
        micrograph_nodes(job.job_dir, version),
        partial(write_micrograph_nodes, job.job_dir, scene_dir, scene_dir, SceneFolder.MICROGRAPH, version),
    )


def _scene_folder(job: JobRequest) -> Path:
    """The scene parameter: a scene job's folder (its scene/ holds the micrographs) or the scene folder itself."""
    if job.scene is None:
        raise JobFailure("mode translate needs the parameter scene: a scene job's folder, e.g. External/job005/")
    for folder in (job.scene / "scene", job.scene):
        if (folder / SceneFolder.DESCRIPTION).is_file():
            return folder
    raise JobFailure(f"scene {job.scene} holds no {SceneFolder.DESCRIPTION}: give the folder of a job run with mode scene")


def _translate_steps(job: JobRequest, version: RelionVersion) -> list[Step]:
    micrographs_star = _require_file(job.micrographs, "real micrographs (in_mics)", "translate")
    scene_dir = _scene_folder(job)
    try:
        real = read_micrograph_names(micrographs_star)
    except InputError as exc:
        raise JobFailure(f"translate: {exc}") from None
    for name in real:
        _require_file(Path(name), "real micrograph", "translate")
    model, translated = job.job_dir / "translator", job.job_dir / "translated"
    method = ["--method", job.method] if job.method not in (None, TRANSLATE_METHODS[0]) else []
    return [
        Step("translate train", ["translate", "train", *method, "--scenes", str(scene_dir), "--real", *real,
                                 "--out", str(model), *_engine_options(job, "translate train")]),
        Step("translate apply", ["translate", "apply", "--model", str(model), "--scenes", str(scene_dir),
                                 "--out", str(translated), *_engine_options(job, "translate apply")],
             micrograph_nodes(job.job_dir, version),
             partial(write_micrograph_nodes, job.job_dir, scene_dir, translated, TranslatedFolder.MICROGRAPH, version)),
    ]


def plan_steps(job: JobRequest, version: RelionVersion = RelionVersion.V3_1) -> list[Step]:
    """Turn the mode into `cryorefine` commands, checking inputs first so mistakes fail before any work.

    `version`, the project's RELION, decides the form of coordinate nodes (scene, translate).
    """
    device = str(job.engine_values.get("device", ""))
    if device.startswith("cuda") and not host_has_cuda():
        # As Scipion's form refuses Use GPU on such a host; left empty, the engine uses what the machine has.
        raise JobFailure(f"device {device} asks for a GPU but {NO_GPU_REASON}: leave gpu and device empty to use "
                         "what the machine has, or submit to a queue with GPUs")
    if job.mode == "scene":
        return [_scene_step(job, version)]
    if job.mode == "translate":
        return _translate_steps(job, version)
    if job.mode == "all":
        names = ["simulate", "train", "apply"] + (["generate"] if job.n is not None else [])
    else:
        names = [job.mode]
    if job.mode == "generate" and job.n is None:
        raise JobFailure("mode generate needs the parameter n (number of particles to generate)")
    job_dir = job.job_dir
    steps: list[Step] = []
    pairs = _pairs_dir(job, simulated_here="simulate" in names)
    if "simulate" in names:
        particles = _require_file(job.particles, "input particles (in_parts)", "simulate")
        reference = _require_file(job.reference, "a 3D reference map (in_3dref)", "simulate")
        mask = ["--mask", str(_require_file(job.mask, "mask", "simulate"))] if job.mask is not None else []
        steps.append(Step(
            "simulate",
            ["simulate", "--particles", str(particles), "--map", str(reference), "--out", str(pairs),
             "--project-dir", ".", *mask, *_engine_options(job, "simulate")],
            [OutputNode(str(pairs / PairsFolder.SIM_STAR), NodeKind.PARTICLES),
             OutputNode(str(pairs / PairsFolder.RAW_STAR), NodeKind.PARTICLES)],
        ))
    if "train" in names:
        # A re-run job (RELION's Continue, or after an abort) goes on from its last checkpoint.
        model = job_dir / "model"
        resume = ["--resume"] if (model / ModelFolder.CHECKPOINT).is_file() else []
        steps.append(Step("train", ["train", "--pairs", str(pairs), "--out", str(model), *resume,
                                    *_engine_options(job, "train")],
                          [OutputNode(str(model / ModelFolder.CONFIG), NodeKind.MODEL)]))
    if "apply" in names or "generate" in names:
        model = _model_dir(job, trained_here="train" in names)
    if "apply" in names:
        applied = job_dir / "applied"
        steps.append(Step(
            "apply",
            ["apply", "--model", str(model), "--particles", str(pairs / PairsFolder.SIM_STAR), "--out", str(applied),
             "--project-dir", ".", *_engine_options(job, "apply")],
            [OutputNode(str(applied / ParticlesFolder.PARTICLES_STAR), NodeKind.PARTICLES)],
        ))
    if "generate" in names:
        generated = job_dir / "generated"
        reference = _require_file(job.reference, "a 3D reference map (in_3dref)", "generate")
        steps.append(Step(
            "generate",
            ["generate", "--model", str(model), "--map", str(reference), "--like", str(pairs / PairsFolder.RAW_STAR),
             "--n", str(job.n), "--out", str(generated), "--project-dir", ".", *_engine_options(job, "generate")],
            # The noise-free ground truth too, so a later job can compare with it (e.g. a denoiser's target).
            [OutputNode(str(generated / ParticlesFolder.PARTICLES_STAR), NodeKind.PARTICLES),
             OutputNode(str(generated / ParticlesFolder.CLEAN_STAR), NodeKind.PARTICLES)],
        ))
    return steps


def _forward_output(stream: IO[bytes], tail: collections.deque) -> None:
    """Copy the engine's log to our stdout (run.out), keeping the last lines to explain a failure."""
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        sys.stdout.write(line)
        sys.stdout.flush()
        tail.append(line.split("\r")[-1].strip())


def _stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the engine and its children, then SIGKILL whatever is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, TERMINATE_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _failure_reason(tail: collections.deque) -> str:
    lines = [line for line in tail if line]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1]


def run_engine_step(step: Step, job: JobRequest) -> None:
    """Run one `cryorefine` command, polling for RELION's abort request while it runs."""
    # The job's threads (RELION's --j) for torch, after the command's first word so that `translate train` reads it too.
    command = [sys.executable, "-m", "cryorefine.cli", step.engine_args[0], "--threads", str(job.threads),
               *step.engine_args[1:]]
    # Progress bars redraw with carriage returns; in run.out one update every few seconds is plenty.
    env = dict(os.environ, OMP_NUM_THREADS=str(job.threads), MKL_NUM_THREADS=str(job.threads),
               TQDM_MININTERVAL=str(PROGRESS_INTERVAL_SECONDS))
    log.info("step %s: %s", step.name, " ".join(command))
    abort_request = job.job_dir / ABORT_REQUEST
    if abort_request.exists():
        raise JobAborted(f"aborted by {abort_request} before step {step.name}")
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    tail: collections.deque = collections.deque(maxlen=20)
    reader = threading.Thread(target=_forward_output, args=(process.stdout, tail), daemon=True)
    reader.start()
    try:
        while True:
            try:
                status = process.wait(timeout=ABORT_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if abort_request.exists():
                    raise JobAborted(f"aborted by {abort_request} during step {step.name}")
    finally:
        if process.poll() is None:
            _stop_process_group(process)
        reader.join(timeout=5)
    if status != 0:
        raise JobFailure(f"step {step.name} failed (exit status {status}): {_failure_reason(tail)}")
    log.info("step %s done in %.1f s", step.name, time.monotonic() - started)


def _find_job_dir(argv: Sequence[str]) -> Path | None:
    """The `--o` value, read before full parsing so that even a bad command line ends with FAILURE."""
    for index, token in enumerate(argv[:-1]):
        if token == "--o":
            return Path(argv[index + 1])
    return None


def _raise_aborted(signum: int, frame) -> None:
    raise JobAborted(f"stopped by signal {signal.Signals(signum).name}")


def finish_job(job_dir: Path, marker: str, nodes: list[OutputNode], version: RelionVersion) -> str:
    """Nodes first: RELION reads them as soon as it sees the exit marker. Returns the marker written."""
    try:
        write_output_nodes(job_dir, nodes, version)
    except Exception as exc:  # the outputs cannot be registered: not a success, but the job must still end
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        marker = FAILURE if marker == SUCCESS else marker
    (job_dir / marker).touch()
    return marker


def run_job(argv: Sequence[str], job_dir: Path) -> int:
    marker, nodes, version = FAILURE, [], RelionVersion.V3_1
    for stale in (SUCCESS, FAILURE, ABORTED):
        (job_dir / stale).unlink(missing_ok=True)
    try:
        version = detect_relion_version(Path.cwd())
        job = parse_job(argv)
        steps = plan_steps(job, version)
        log.info("cryorefine External job: mode %s, steps %s, RELION %s node types",
                 job.mode, ", ".join(s.name for s in steps), version.value)
        for step in steps:
            run_engine_step(step, job)
            if step.write_outputs is not None:
                step.write_outputs()
            missing = [node.name for node in step.outputs if not Path(node.name).is_file()]
            if missing:
                raise JobFailure(f"step {step.name} ended without writing {', '.join(missing)}")
            nodes += step.outputs
        marker = SUCCESS
    except (JobAborted, KeyboardInterrupt) as exc:
        marker = ABORTED
        (job_dir / ABORT_REQUEST).unlink(missing_ok=True)
        print(f"{PROG}: {str(exc) or 'interrupted'}", file=sys.stderr)
    except JobFailure as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
    except Exception as exc:  # anything else must still end the job with FAILURE and a readable line
        traceback.print_exc(file=sys.stdout)
        print(f"{PROG}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        marker = finish_job(job_dir, marker, nodes, version)
    log.info("job finished: %s", marker)
    return {SUCCESS: 0, FAILURE: 1, ABORTED: 130}[marker]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)
    if argv and argv[0] in ("-h", "--help"):
        build_parser().print_help()
        return 0
    job_dir = _find_job_dir(argv)
    if job_dir is None:
        print(f"{PROG}: error: --o JOB_DIRECTORY is required (RELION gives it)", file=sys.stderr)
        return 1
    job_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_aborted)
    return run_job(argv, job_dir)


if __name__ == "__main__":
    sys.exit(main())
