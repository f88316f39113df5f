"""A throw-away headless Scipion for the plugin tests: its home, one project per test module, protocol runs,
and the runs several modules start from (imported TRPV1, simulated pairs, a trained model).

Importing this module configures Scipion (it reads the environment once, at its first import) and
skips the importing test module visibly when Scipion or Tk is absent.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest


def _prepare_scipion_environment() -> Path | None:
    """Point Scipion at a throw-away home before pyworkflow is imported (it reads these once)."""
    if "pyworkflow" in sys.modules:
        return None
    root = Path(tempfile.mkdtemp(prefix="cryorefine-scipion-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "home" / "config").mkdir(parents=True)
    (root / "home" / "config" / "hosts.conf").write_text(
        "[localhost]\nPARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s\n")
    os.environ.update(
        SCIPION_HOME=str(root / "home"), SCIPION_USER_DATA=str(root / "data"), SCIPION_TESTS=str(root / "tests"),
        SCIPION_DOMAIN="pwem", SCIPION_PYTHON=sys.executable, SCIPION_TEST_NOSYNC="1", SCIPION_NOTIFY="False",
        OMP_NUM_THREADS="1",  # the protocols' engine runs share a small machine
    )
    return root


SCIPION_ROOT = _prepare_scipion_environment()
pytest.importorskip("tkinter", reason="Tk is needed for Scipion to register its protocols")
pytest.importorskip("pyworkflow", reason="Scipion (scipion-pyworkflow) is not installed")
pytest.importorskip("pwem", reason="Scipion (scipion-em) is not installed")

from pwem.protocols import ProtImportParticles, ProtImportVolumes  # noqa: E402
from pyworkflow.project import Manager  # noqa: E402

from cryorefine_scipion.protocols import ProtCryorefineSimulate, ProtCryorefineTrain  # noqa: E402
from tests.conftest import TRPV1  # noqa: E402

TRAIN_STEPS = 4


def headless_project(name: str):
    """Body of a module fixture: a new project, the working directory inside it while the module runs
    (protocols and the paths in Scipion sets are relative to it)."""
    if SCIPION_ROOT is None:
        pytest.skip("pyworkflow was imported before the tests could configure a temporary Scipion home")
    cwd = os.getcwd()
    project = Manager().createProject(name)
    os.chdir(project.path)
    yield project
    os.chdir(cwd)


def launch_protocol(project, protocol_class, **kwargs):
    """Validate and run a protocol to the end; a failed run fails the test with its log's tail."""
    protocol = project.newProtocol(protocol_class, **kwargs)
    errors = protocol.validate()
    assert not errors, errors
    project.launchProtocol(protocol, wait=True)
    if not protocol.isFinished():
        log = Path(project.path) / protocol.getLogPaths()[0]
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:]) if log.exists() else ""
        pytest.fail(f"{protocol.getRunName()} did not finish ({protocol.getStatus()}):\n{tail}")
    return protocol


# Fixtures for the modules that import them; each module defines its own `project` fixture.


@pytest.fixture(scope="module")
def trpv1(project):
    """The bundled real TRPV1 particles (with poses and CTF) and map, imported as Scipion users do."""
    pytest.importorskip("relion", reason="scipion-em-relion is needed to import RELION STAR files into Scipion")
    particles = launch_protocol(project, ProtImportParticles, importFrom=ProtImportParticles.IMPORT_FROM_RELION,
                                starFile=str(TRPV1 / "particles.star"), samplingRate=4.88, voltage=300,
                                sphericalAberration=2.0, amplitudeContrast=0.1, magnification=10000)
    volume = launch_protocol(project, ProtImportVolumes, filesPath=str(TRPV1 / "consensus_map.mrc"),
                             samplingRate=4.88)
    return particles, volume


@pytest.fixture(scope="module")
def simulated(project, trpv1):
    particles, volume = trpv1
    return launch_protocol(project, ProtCryorefineSimulate, inputParticles=particles.outputParticles,
                           inputVolume=volume.outputVolume, useGpu=False)


@pytest.fixture(scope="module")
def trained(project, simulated):
    return launch_protocol(project, ProtCryorefineTrain, inputPairs=simulated.outputPairs, steps=TRAIN_STEPS,
                           batchSize=4, useGpu=False)
