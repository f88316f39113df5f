"""Objects the plugin registers in a Scipion project: engine folders the next protocol reads."""

import os

import pyworkflow.object as pwobj
from pwem.objects import EMObject

from cryorefine.artifacts import ModelFolder


class CryorefineDirectory(EMObject):
    """A folder written by the engine, with the image geometry its contents share."""

    def __init__(self, path=None, samplingRate=None, boxSize=None, **kwargs):
        EMObject.__init__(self, **kwargs)
        self._path = pwobj.String(path)
        self._samplingRate = pwobj.Float(samplingRate)
        self._boxSize = pwobj.Integer(boxSize)

    def getPath(self, *parts) -> str:
        return os.path.join(self._path.get(), *parts)

    def getSamplingRate(self) -> float:
        return self._samplingRate.get()

    def getBoxSize(self) -> int:
        return self._boxSize.get()

    def getFiles(self):
        return {self._path.get()}

    def __str__(self):
        return f"{self.getClassName()} ({self.getBoxSize()} px, {self.getSamplingRate():.3f} Å/px)"


class CryorefinePairs(CryorefineDirectory):
    """The paired simulated/raw particles `cryorefine simulate` wrote (sim.star, raw.star, stacks)."""


class CryorefineModel(CryorefineDirectory):
    """A trained model: the folder `cryorefine train` wrote (checkpoint, config, log, plots)."""

    def getPlot(self, name: str) -> str:
        return self.getPath(ModelFolder.PLOTS, name)


class CryorefineScene(CryorefineDirectory):
    """Synthetic micrographs `cryorefine scene` wrote (micrographs, clean images, masks, ice,
    coordinates, scene.json). The box size is the micrographs'; the particle box is the one the
    scene's coordinates were registered with, so a translation can register them the same way."""

    def __init__(self, particleBox=None, **kwargs):
        CryorefineDirectory.__init__(self, **kwargs)
        self._particleBox = pwobj.Integer(particleBox)

    def getParticleBox(self) -> int:
        return self._particleBox.get()
