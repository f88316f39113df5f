"""Simulate every particle at its refined pose and CTF: the sim/raw pairs training needs."""

from enum import Enum

import numpy as np
import pyworkflow.object as pwobj
import pyworkflow.protocol.params as params
from pwem.objects import SetOfParticles

from cryorefine_scipion.constants import RAW_STAR, SIM_CORRELATION_LABEL, SIM_STAR
from cryorefine_scipion.convert import fill_from_sources, read_particles_star, write_particles_star
from cryorefine_scipion.objects import CryorefinePairs
from cryorefine_scipion.protocols.protocol_base import ProtCryorefineBase, local_path, particle_problems

# The engine resamples the map to the particles' pixel size; beyond this ratio it refuses.
MAX_PIXEL_RATIO = 5.0


class SimulateOutputs(Enum):
    outputSimParticles = SetOfParticles
    outputRawParticles = SetOfParticles
    outputPairs = CryorefinePairs


class ProtCryorefineSimulate(ProtCryorefineBase):
    """Simulate each experimental particle at its refined pose and CTF (RELION's forward model)
    and keep the re-boxed, normalised raw image beside it. The pairs train `cryorefine train`;
    each simulated particle keeps its agreement with the raw image (_cryorefine_simCorrelation).
    """

    _label = "simulate pairs"
    _possibleOutputs = SimulateOutputs

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.meanCorrelation = pwobj.Float()

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      pointerCondition="hasAlignmentProj and hasCTF", important=True,
                      label="Particles", help="Experimental particles with refined 3D poses and CTF.")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume", important=True,
                      label="Consensus map", help="The map the poses were refined against.")
        form.addParam("useHalfMaps", params.BooleanParam, default=False, label="Use the half maps?",
                      help="Simulate each particle from the half map of its random subset (rlnRandomSubset), "
                           "as a gold-standard refinement does. The map must carry its half maps.")
        form.addParam("inputMask", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      label="Mask (optional)",
                      help="3D mask whose projection marks the particle when normalising the images. "
                           "Without it a soft circle of the diameter below is used.")
        form.addParam("maskDiameter", params.FloatParam, default=0, label="Mask diameter (Å)",
                      condition="not inputMask", help="Soft circular mask diameter; 0 for 75% of the box.")

        form.addSection(label="Geometry")
        form.addParam("boxSize", params.IntParam, default=0, label="Box (px)",
                      help="Re-box the pairs to this size; 0 keeps the particles' box.")
        form.addParam("pixelSize", params.FloatParam, default=0, label="Pixel size (Å)",
                      help="Fourier-crop the pairs to this pixel size; 0 keeps the particles' pixel size.")
        form.addParam("maxParticles", params.IntParam, default=0, label="Maximum number of particles",
                      help="Simulate at most this many particles; 0 for all.")
        form.addParam("randomSubset", params.BooleanParam, default=False, condition="maxParticles > 0",
                      label="Random subset?", help="Pick the particles at random instead of the first ones.")
        form.addParam("seed", params.IntParam, default=0, label="Random seed")
        form.addParam("applyCtf", params.BooleanParam, default=True, label="Apply the CTF?")
        form.addParam("bfactor", params.FloatParam, default=0.0, label="Extra B-factor (Å²)",
                      help="Envelope on top of each particle's own CTF B-factor.")
        form.addParam("batchSize", params.IntParam, default=64, expertLevel=params.LEVEL_ADVANCED,
                      label="Batch size")
        self._defineComputeParams(form)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.simulateStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _inputStar(self) -> str:
        return self._getExtraPath("input_particles.star")

    def _pairsDir(self, *parts) -> str:
        return self._getExtraPath("pairs", *parts)

    def convertInputStep(self):
        write_particles_star(self.inputParticles.get(), self._inputStar())

    def simulateStep(self):
        volume = self.inputVolume.get()
        arguments = ["--particles", self._inputStar(), "--map", local_path(volume.getFileName()),
                     "--map-pixel-size", volume.getSamplingRate(), "--out", self._pairsDir(),
                     "--seed", self.seed.get(), "--device", self._device(), "--batch-size", self.batchSize.get(),
                     "--bfactor", self.bfactor.get()]
        if self.useHalfMaps:
            arguments += ["--half-maps", *(local_path(half) for half in volume.getHalfMaps().split(","))]
        if self.inputMask.get() is not None:
            arguments += ["--mask", local_path(self.inputMask.get().getFileName())]
        elif self.maskDiameter.get() > 0:
            arguments += ["--mask-diameter", self.maskDiameter.get()]
        if self.boxSize.get() > 0:
            arguments += ["--box", self.boxSize.get()]
        if self.pixelSize.get() > 0:
            arguments += ["--pixel-size", self.pixelSize.get()]
        if self.maxParticles.get() > 0:
            arguments += ["--max-particles", self.maxParticles.get()]
            if self.randomSubset:
                arguments.append("--random-subset")
        if not self.applyCtf:
            arguments.append("--no-ctf")
        self._runCryorefine("simulate", arguments)

    def createOutputStep(self):
        inputParticles = self.inputParticles.get()
        outputs = {}
        for name, star_name, suffix in (("outputSimParticles", SIM_STAR, "sim"),
                                        ("outputRawParticles", RAW_STAR, "raw")):
            star = read_particles_star(self._pairsDir(star_name))
            particles = self._createSetOfParticles(suffix)
            particles.copyInfo(inputParticles)
            particles.setSamplingRate(star.pixel_size)
            fill_from_sources(particles, star, inputParticles)
            outputs[name] = particles
            if star_name == SIM_STAR and star.rows and SIM_CORRELATION_LABEL in star.rows[0]:
                self.meanCorrelation.set(float(np.mean([float(row[SIM_CORRELATION_LABEL]) for row in star.rows])))
        sim = outputs["outputSimParticles"]
        outputs["outputPairs"] = CryorefinePairs(path=self._pairsDir(), samplingRate=sim.getSamplingRate(),
                                                 boxSize=sim.getXDim())
        self._defineOutputs(**outputs)
        for output in outputs.values():
            self._defineSourceRelation(self.inputParticles, output)
            self._defineSourceRelation(self.inputVolume, output)

    # ------------------------------------------------------------------ info
    def _validate(self):
        errors = []
        particles = self.inputParticles.get()
        volume = self.inputVolume.get()
        if particles is None or volume is None:
            return ["Choose the particles and the consensus map."]
        errors += particle_problems(particles, "The particles")
        ratio = volume.getSamplingRate() / particles.getSamplingRate()
        if not 1 / MAX_PIXEL_RATIO <= ratio <= MAX_PIXEL_RATIO:
            errors.append(f"The map has {volume.getSamplingRate():.3f} Å/px but the particles "
                          f"{particles.getSamplingRate():.3f} Å/px; resample the map to the particles' "
                          "pixel size (the two may differ by at most a factor of 5).")
        if self.useHalfMaps:
            halves = volume.getHalfMaps().split(",") if volume.hasHalfMaps() else []
            if len(halves) != 2:
                errors.append("'Use the half maps' is set but the map has no pair of half maps; "
                              "choose a map from a refinement that kept them, or set it to No.")
            elif not particles.getFirstItem().hasAttribute("_rlnRandomSubset"):
                errors.append("Half maps need each particle's random subset (rlnRandomSubset), "
                              "which these particles lack.")
        mask = self.inputMask.get()
        if mask is not None and mask.getDim() != volume.getDim():
            errors.append(f"The mask is {mask.getDim()} voxels but the map {volume.getDim()}; "
                          "they must have the same box.")
        if mask is not None and abs(mask.getSamplingRate() - volume.getSamplingRate()) > 1e-3 * volume.getSamplingRate():
            errors.append(f"The mask has {mask.getSamplingRate():.3f} Å/px but the map "
                          f"{volume.getSamplingRate():.3f} Å/px; they must match.")
        if self.boxSize.get() < 0 or self.pixelSize.get() < 0 or self.maxParticles.get() < 0:
            errors.append("Box, pixel size and maximum number of particles cannot be negative.")
        return errors

    def _summary(self):
        if not hasattr(self, "outputSimParticles"):
            return ["Simulated pairs not ready yet."]
        sim = self.outputSimParticles
        line = (f"Simulated {sim.getSize()} particles ({sim.getXDim()} px, {sim.getSamplingRate():.3f} Å/px) "
                f"beside their re-boxed raw images")
        if self.meanCorrelation.hasValue():
            line += f"; mean correlation with the raw images r = {self.meanCorrelation.get():.3f}"
        return [line + "."]
