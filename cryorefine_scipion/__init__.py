"""Scipion 3 plugin for cryorefine: simulate paired particles, train, refine; build and translate synthetic micrographs.

The plugin is a launcher. Its protocols convert Scipion objects to STAR + MRC
files, run the `cryorefine` command line and register what it writes; nothing
here imports torch, so the engine may live in another environment.
"""

import os
import shutil
import sys

import pwem
import pyworkflow.utils as pwutils

from cryorefine_scipion.constants import CRYOREFINE_BIN_VAR, CRYOREFINE_ENV_ACTIVATION_VAR, PLUGIN_NAME

__version__ = "0.1.0"
_references = []
_logo = ""


def default_executable() -> str:
    """The `cryorefine` installed beside the Python running Scipion, else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "cryorefine")
    if os.path.exists(beside):
        return beside
    return shutil.which("cryorefine") or beside


class Plugin(pwem.Plugin):
    _pathVars = [CRYOREFINE_BIN_VAR]
    _supportedVersions = [__version__]

    @classmethod
    def _defineVariables(cls):
        cls._defineVar(CRYOREFINE_BIN_VAR, default_executable(),
                       description="The cryorefine command line program to run")
        cls._defineVar(CRYOREFINE_ENV_ACTIVATION_VAR, "",
                       description="Shell command run before cryorefine, e.g. 'conda activate cryorefine' "
                                   "when the engine lives in its own environment; empty for none")

    def getName(self):
        """The name Scipion puts before each protocol's label in run names and menus ("cryorefine - train"),
        instead of the module's (cryorefine_scipion)."""
        return PLUGIN_NAME

    @classmethod
    def getEnviron(cls):
        env = pwutils.Environ(os.environ)
        activation = cls.getVar(CRYOREFINE_ENV_ACTIVATION_VAR)
        if activation:
            env.setPrepend(f"{activation} && ")
        return env

    @classmethod
    def getProgram(cls) -> str:
        return cls.getVar(CRYOREFINE_BIN_VAR)

    @classmethod
    def validateInstallation(cls):
        if cls.getVar(CRYOREFINE_ENV_ACTIVATION_VAR):
            return []  # the program exists only once the environment is active
        return super().validateInstallation()

    @classmethod
    def defineBinaries(cls, env):
        """Nothing to build: the engine is a pip package (`pip install cryorefine`)."""
