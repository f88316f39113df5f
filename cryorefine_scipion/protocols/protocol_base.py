"""What every cryorefine protocol shares: the compute form, running the command line, input checks,
registering a scene's coordinates."""

import os
import re
import shlex
import subprocess
import sys

import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol
from pyworkflow.exceptions import PyworkflowException

from cryorefine.device import NO_GPU_REASON, host_has_cuda
from cryorefine_scipion import Plugin
from cryorefine_scipion.constants import PLUGIN_NAME
from cryorefine_scipion.convert import Scene, fill_scene_coordinates, fill_scene_ctfs, is_mrc_stack


def local_path(filename: str) -> str:
    """An absolute path for a Scipion file name (which may carry a ':mrc' format suffix)."""
    for suffix in (":mrc", ":mrcs"):
        if filename.endswith(suffix):
            filename = filename[: -len(suffix)]
    return os.path.abspath(filename)


def particle_problems(particles, what: str) -> list[str]:
    """Why a SetOfParticles cannot be simulated or paired, in words (empty when it can)."""
    problems = []
    if not particles.hasAlignmentProj():
        problems.append(f"{what} have no 3D alignment (projection angles and shifts); run a 3D refinement "
                        "first, or import them with their refined poses.")
    if not particles.hasCTF():
        problems.append(f"{what} have no CTF; estimate the CTF of their micrographs and re-extract, "
                        "or import them with their CTF.")
    first = particles.getFirstItem()
    if first is not None and not is_mrc_stack(local_path(first.getFileName())):
        problems.append(f"{what} are stored as {os.path.basename(first.getFileName())}; cryorefine reads MRC "
                        "stacks only (convert the stack to .mrcs first).")
    return problems


def geometry_problem(what: str, box: int, sampling: float, expected_box: int, expected_sampling: float) -> list[str]:
    """A box or pixel-size mismatch, explained (empty when both agree within 0.1 %)."""
    if box != expected_box:
        return [f"{what} are {box} px but the model was trained on {expected_box} px images; "
                "re-box them (or simulate with the same box) first."]
    if abs(sampling - expected_sampling) > 1e-3 * expected_sampling:
        return [f"{what} have {sampling:.4f} Å/px but the model was trained at {expected_sampling:.4f} Å/px; "
                "resample them to the model's pixel size first."]
    return []


# The engine's one-line reason for refusing or stopping: `cryorefine COMMAND: error: ...` (cryorefine.cli).
ENGINE_ERROR_LINE = re.compile(r"^cryorefine[\w ]*: (error: |interrupted)")


class EngineFailed(PyworkflowException):
    """A `cryorefine` run that ended with a non-zero status; Scipion shows its message in the GUI, where a
    bare exit status would send the user to the log."""


def engine_failure_reason(stderr: str) -> str:
    """The line that explains a failed engine run: its own error line, else the last line it wrote
    (an unexpected exception's), else empty."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    explained = [line for line in lines if ENGINE_ERROR_LINE.match(line)]
    return (explained or lines or [""])[-1]


class ProtCryorefineBase(EMProtocol):
    """Base of the cryorefine protocols: GPU selection and the call of the `cryorefine` program."""

    @classmethod
    def getClassPackageName(cls):
        """The name the form shows ("cryorefine compute"), as in run names, instead of the module's."""
        return PLUGIN_NAME

    def _defineComputeParams(self, form):
        form.addHidden(params.USE_GPU, params.BooleanParam, default=host_has_cuda(),
                       label="Use GPU",
                       help="Run on a GPU (CUDA); No runs on the CPU (slow, for small tests). The default is Yes "
                            "where this machine has an NVIDIA driver.")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0",
                       label="GPU ID", help="The GPU to use; Scipion fills it from the queue or host settings.")
        form.addParallelSection(threads=1, mpi=0)

    def _device(self) -> str:
        return "cuda" if self.usesGpu() else "cpu"

    def _extraArguments(self) -> list:
        """The form's free-text extra engine options (`extraParams`), split as a shell would."""
        return shlex.split(self.extraParams.get() or "")

    def _extraArgumentsProblem(self) -> list:
        try:
            self._extraArguments()
        except ValueError as exc:
            return [f"Additional arguments cannot be parsed: {exc}."]
        return []

    def validate(self):
        """Scipion's checks, the protocol's own, and the device: a GPU run on a host without one would
        fail with only an exit status in the GUI, so it is refused here with the reason."""
        errors = super().validate()
        if self.usesGpu() and not self.useQueue() and not host_has_cuda():
            errors.append(f"Use GPU is Yes but {NO_GPU_REASON}: set Use GPU to No to run on the CPU, "
                          "or submit to a queue with GPUs.")
        return errors

    def _runCryorefine(self, command: str, arguments: list) -> None:
        """Run `cryorefine COMMAND --threads N ARGS...` (the form's Threads, also as OMP_NUM_THREADS);
        each argument is passed as one word."""
        env = Plugin.getEnviron()
        threads = max(1, int(self.numberOfThreads.get() or 1))
        env["OMP_NUM_THREADS"] = str(threads)
        if self.usesGpu():
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in self.getGpuList())
        stderr_log = self.getStderrLog()  # the engine's stderr goes to the run's log (Scipion redirects it)
        sys.stderr.flush()
        start = os.path.getsize(stderr_log) if os.path.exists(stderr_log) else 0
        try:
            self.runJob(Plugin.getProgram(), [command, "--threads", str(threads), *map(str, arguments)], env=env,
                        numberOfMpi=1)
        except subprocess.CalledProcessError as failure:
            raise EngineFailed(self._failureMessage(command, failure.returncode, stderr_log, start)) from failure

    @staticmethod
    def _failureMessage(command: str, status: int, stderr_log: str, start: int) -> str:
        """What the engine wrote to stderr during this call (from byte `start` of the log), in one line."""
        written = ""
        if os.path.exists(stderr_log):
            with open(stderr_log, errors="replace") as handle:
                handle.seek(start)
                written = handle.read()
        reason = engine_failure_reason(written)
        if ENGINE_ERROR_LINE.match(reason):
            return reason
        if reason:
            return f"cryorefine {command} failed (exit status {status}): {reason}"
        return f"cryorefine {command} failed with exit status {status} and no message; see the Output Log."

    def _defineSceneCoordinatesAndCtf(self, scene: Scene, micrographs, box: int) -> tuple:
        """Register the scene's particle coordinates and true defocus on `micrographs`, which must already
        be an output (the new sets point to it). Returns (coordinates, CTFs)."""
        coordinates = self._createSetOfCoordinates(micrographs)
        coordinates.setBoxSize(box)
        fill_scene_coordinates(coordinates, scene)
        ctfs = self._createSetOfCTF()
        fill_scene_ctfs(ctfs, scene, micrographs)
        self._defineOutputs(outputCoordinates=coordinates, outputCTF=ctfs)
        return coordinates, ctfs

    def _citations(self):
        return []
