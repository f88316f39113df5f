"""Turn simulated particles into realistic ones, or generate new realistic particles from a map."""

from enum import Enum

import pyworkflow.protocol.params as params
from pwem.objects import SetOfParticles

from cryorefine.gan.config import APPLY_NOISE, GENERATE_NOISE, NOISE_CHOICES
from cryorefine_scipion.constants import CLEAN_STAR, GENERATED_PLOT, PARTICLES_STAR
from cryorefine_scipion.convert import (
    fill_from_sources,
    particle_from_row,
    read_images,
    read_particles_star,
    write_particles_star,
)
from cryorefine_scipion.protocols.protocol_base import (
    ProtCryorefineBase,
    geometry_problem,
    local_path,
    particle_problems,
)

MODE_APPLY, MODE_GENERATE = 0, 1
NOISE_MODELS = NOISE_CHOICES  # the engine's list and defaults (`apply/generate --noise`)
POSE_SOURCES = ("uniform", "like")
PANEL_PARTICLES = 6


class RefineOutputs(Enum):
    outputParticles = SetOfParticles
    outputCleanParticles = SetOfParticles  # generate only: the same particles without noise


class ProtCryorefineRefine(ProtCryorefineBase):
    """Make simulated particles look real with a trained model ('apply'), or project a map at
    the poses and CTFs of a template set and make those look real ('generate'). The output
    particles carry poses, CTF and acquisition, ready for refinement or benchmarking.
    """

    _label = "apply model / generate"
    _possibleOutputs = RefineOutputs

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputModel", params.PointerParam, pointerClass="CryorefineModel", important=True,
                      label="Trained model", help="The model output of a 'train' run.")
        form.addParam("mode", params.EnumParam, choices=["apply to simulated particles", "generate from a map"],
                      default=MODE_APPLY, display=params.EnumParam.DISPLAY_HLIST, label="Mode")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      condition=f"mode == {MODE_APPLY}", pointerCondition="hasAlignmentProj and hasCTF",
                      label="Simulated particles", help="Clean simulations, e.g. the simulated output of "
                      "'simulate pairs', at the model's box and pixel size.")
        form.addParam("noise", params.EnumParam, choices=list(NOISE_MODELS), default=NOISE_MODELS.index(APPLY_NOISE),
                      condition=f"mode == {MODE_APPLY}", label="Noise model",
                      help="gan: the trained generator. The others are the fitted baselines to compare against.")
        form.addParam("rawParticles", params.PointerParam, pointerClass="SetOfParticles", allowsNull=True,
                      condition=f"mode == {MODE_APPLY}", label="Evaluate against raw particles (optional)",
                      help="The raw particles paired with the simulated ones (the raw output of 'simulate "
                           "pairs'): scores the realistic particles against them with `cryorefine evaluate` "
                           "(spectra, histograms, FRC, a classifier test) and plots the results.")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume", condition=f"mode == {MODE_GENERATE}",
                      label="Map", help="The map to project.")
        form.addParam("templateParticles", params.PointerParam, pointerClass="SetOfParticles",
                      condition=f"mode == {MODE_GENERATE}", pointerCondition="hasAlignmentProj and hasCTF",
                      label="Template particles",
                      help="Particles whose poses, CTFs and optics the new particles follow "
                           "(e.g. the raw output of 'simulate pairs').")
        form.addParam("generateNoise", params.EnumParam, choices=list(NOISE_MODELS),
                      default=NOISE_MODELS.index(GENERATE_NOISE), condition=f"mode == {MODE_GENERATE}",
                      label="Noise model", help=f"{GENERATE_NOISE} (the default, as in `cryorefine generate`): the "
                      "best method on the demo's held-out data (docs/results.md); gan: the trained generator.")
        form.addParam("numberOfParticles", params.IntParam, default=1000, condition=f"mode == {MODE_GENERATE}",
                      label="Number of particles")
        form.addParam("poses", params.EnumParam, choices=list(POSE_SOURCES), default=0,
                      condition=f"mode == {MODE_GENERATE}", display=params.EnumParam.DISPLAY_HLIST,
                      label="Poses", help="uniform: uniform on SO(3); like: drawn from the template particles. "
                                          "CTFs are always drawn from the template particles.")
        form.addParam("seed", params.IntParam, default=0, label="Random seed",
                      help="Seeds the noise (and, when generating, the poses and CTFs drawn).")
        self._defineComputeParams(form)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.refineStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)
        if self._isApply() and self.rawParticles.get() is not None:
            self._insertFunctionStep(self.evaluateStep, needsGPU=True)
        if not self._isApply():
            self._insertFunctionStep(self.plotGeneratedStep, needsGPU=False)

    def _isApply(self) -> bool:
        return self.mode.get() == MODE_APPLY

    def _inputStar(self) -> str:
        return self._getExtraPath("input_particles.star")

    def _outDir(self, *parts) -> str:
        return self._getExtraPath("output", *parts)

    def evaluationDir(self, *parts) -> str:
        return self._getExtraPath("evaluation", *parts)

    def generatedPlot(self) -> str:
        return self._getExtraPath(GENERATED_PLOT)

    def _noise(self) -> str:
        return NOISE_MODELS[(self.noise if self._isApply() else self.generateNoise).get()]

    def convertInputStep(self):
        source = self.inputParticles.get() if self._isApply() else self.templateParticles.get()
        write_particles_star(source, self._inputStar())

    def refineStep(self):
        common = ["--model", self.inputModel.get().getPath(), "--out", self._outDir(),
                  "--noise", self._noise(), "--seed", self.seed.get(), "--device", self._device()]
        if self._isApply():
            self._runCryorefine("apply", [*common, "--particles", self._inputStar()])
        else:
            volume = self.inputVolume.get()
            self._runCryorefine("generate", [*common, "--map", local_path(volume.getFileName()),
                                             "--map-pixel-size", volume.getSamplingRate(),
                                             "--like", self._inputStar(), "--n", self.numberOfParticles.get(),
                                             "--poses", POSE_SOURCES[self.poses.get()]])

    def createOutputStep(self):
        star = read_particles_star(self._outDir(PARTICLES_STAR))
        if self._isApply():
            source = self.inputParticles.get()
            particles = self._createSetOfParticles()
            particles.copyInfo(source)
            particles.setSamplingRate(star.pixel_size)
            fill_from_sources(particles, star, source)
            self._defineOutputs(outputParticles=particles)
            for input_pointer in (self.inputModel, self.inputParticles):
                self._defineSourceRelation(input_pointer, particles)
            return
        outputs = {"outputParticles": self._generatedSet(star, ""),
                   "outputCleanParticles": self._generatedSet(read_particles_star(self._outDir(CLEAN_STAR)), "clean")}
        self._defineOutputs(**outputs)
        for output in outputs.values():
            for input_pointer in (self.inputModel, self.inputVolume, self.templateParticles):
                self._defineSourceRelation(input_pointer, output)

    def _generatedSet(self, star, suffix: str):
        """New particles whose poses, CTFs and optics are the ones the STAR file records."""
        template = self.templateParticles.get()
        particles = self._createSetOfParticles(suffix)
        particles.copyInfo(template)
        particles.setSamplingRate(star.pixel_size)
        for row in star.rows:
            particles.append(particle_from_row(row, star, template.getAcquisition()))
        return particles

    def plotGeneratedStep(self):
        """A panel of the first generated particles above their clean images, for the viewer: the engine's
        generate writes no plot."""
        from cryorefine.plots import plot_image_sets  # sets matplotlib's Agg backend: not in Scipion's GUI

        sets = {"generated": read_images(self.outputParticles, PANEL_PARTICLES),
                "clean": read_images(self.outputCleanParticles, PANEL_PARTICLES)}
        plot_image_sets(self.generatedPlot(), sets, max_columns=PANEL_PARTICLES, shared_grey_scale=False,
                        title=f"Generated particles ({self._noise()} noise) and their clean images")

    def evaluateStep(self):
        raw_star = self._getExtraPath("raw_particles.star")
        write_particles_star(self.rawParticles.get(), raw_star)
        self._runCryorefine("evaluate", ["particles", "--fake", self._outDir(PARTICLES_STAR), "--raw", raw_star,
                                         "--sim", self._inputStar(), "--out", self.evaluationDir()])

    # ------------------------------------------------------------------ info
    def _validate(self):
        model = self.inputModel.get()
        if model is None:
            return ["Choose a trained model."]
        box, sampling = model.getBoxSize(), model.getSamplingRate()
        if self._isApply():
            particles = self.inputParticles.get()
            if particles is None:
                return ["Choose the simulated particles to refine."]
            errors = particle_problems(particles, "The simulated particles")
            raw = self.rawParticles.get()
            if raw is not None and (raw.getSize() != particles.getSize() or raw.getIdSet() != particles.getIdSet()):
                errors.append("The raw particles must be the partners of the simulated ones (the same particle "
                              "ids), e.g. the raw and simulated outputs of one 'simulate pairs' run.")
            return errors + geometry_problem("The simulated particles", particles.getXDim(),
                                             particles.getSamplingRate(), box, sampling)
        template, volume = self.templateParticles.get(), self.inputVolume.get()
        if template is None or volume is None:
            return ["Choose the map and the template particles."]
        errors = particle_problems(template, "The template particles")
        errors += geometry_problem("The template particles", template.getXDim(), template.getSamplingRate(),
                                   box, sampling)
        if abs(volume.getSamplingRate() - sampling) > 1e-3 * sampling:
            errors.append(f"The map has {volume.getSamplingRate():.4f} Å/px but the model works at "
                          f"{sampling:.4f} Å/px; resample the map first.")
        if self.numberOfParticles.get() is None or self.numberOfParticles.get() <= 0:
            errors.append("The number of particles must be positive.")
        return errors

    def _summary(self):
        if not hasattr(self, "outputParticles"):
            return ["Realistic particles not ready yet."]
        out = self.outputParticles
        how = (f"applied the model ({self._noise()}) to simulated particles" if self._isApply()
               else f"generated them from a map at template poses ({self._noise()} noise)")
        return [f"{out.getSize()} realistic particles ({out.getXDim()} px, {out.getSamplingRate():.3f} Å/px): {how}."]
