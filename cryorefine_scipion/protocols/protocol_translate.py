"""Make synthetic micrographs look like real ones, without pairs, and keep their ground truth."""

import os
from enum import Enum

import pyworkflow.protocol.params as params
from pwem.objects import SetOfCoordinates, SetOfCTF, SetOfMicrographs

from cryorefine.unpaired.config import METHODS, DiffusionConfig, UnpairedConfig
from cryorefine_scipion.constants import SCENE_DESCRIPTION, TRANSLATED_MICROGRAPH
from cryorefine_scipion.convert import fill_scene_micrographs, is_mrc_stack, read_scene
from cryorefine_scipion.protocols.protocol_base import ProtCryorefineBase, local_path

SCENE_FROM_RUN, SCENE_FROM_FOLDER = 0, 1
# The engine's methods and the contrastive translator's defaults (torch-free config): no drift from the CLI.
CONTRASTIVE, DIFFUSION = UnpairedConfig(), DiffusionConfig()


class TranslateOutputs(Enum):
    outputMicrographs = SetOfMicrographs
    outputCoordinates = SetOfCoordinates
    outputCTF = SetOfCTF


class ProtCryorefineTranslate(ProtCryorefineBase):
    """Learn, without pairs, to turn a scene's clean synthetic micrographs into micrographs that look
    like the given real ones (`cryorefine translate train`), then translate every micrograph of the
    scene (`translate apply`). The translated micrographs keep the scene's particle coordinates and
    true defocus, registered on them as coordinates and CTFs.
    """

    _label = "translate scene"
    _possibleOutputs = TranslateOutputs

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("sceneFrom", params.EnumParam, choices=["a 'build scene' run", "a folder"],
                      default=SCENE_FROM_RUN, display=params.EnumParam.DISPLAY_HLIST, label="Scene from")
        form.addParam("inputScene", params.PointerParam, pointerClass="CryorefineScene",
                      condition=f"sceneFrom == {SCENE_FROM_RUN}", label="Scene",
                      help="The scene output of a 'build scene' run.")
        form.addParam("sceneFolder", params.PathParam, condition=f"sceneFrom == {SCENE_FROM_FOLDER}",
                      label="Scene folder", help="A folder written by `cryorefine scene` (it holds scene.json).")
        form.addParam("inputMicrographs", params.PointerParam, pointerClass="SetOfMicrographs", important=True,
                      label="Real micrographs",
                      help="What the translated micrographs should look like (MRC files); they are "
                           "Fourier-cropped to the scene's pixel size and the last quarter of each is held out.")

        form.addSection(label="Training")
        form.addParam("method", params.EnumParam, choices=list(METHODS), default=0, label="Method",
                      help="contrastive: a GAN with a mask-guided contrastive term; diffusion: a conditional "
                           "diffusion model (see `cryorefine translate train --help`).")
        form.addParam("steps", params.IntParam, default=CONTRASTIVE.steps, label="Training steps",
                      help=f"The engine's default for the contrastive method; it uses {DIFFUSION.steps} for diffusion.")
        form.addParam("batchSize", params.IntParam, default=CONTRASTIVE.batch_size, label="Batch size",
                      help=f"The engine's default for the contrastive method; it uses {DIFFUSION.batch_size} for diffusion.")
        form.addParam("tile", params.IntParam, default=CONTRASTIVE.tile, label="Training tile (px)")
        form.addParam("baseChannels", params.IntParam, default=CONTRASTIVE.model.base_channels,
                      expertLevel=params.LEVEL_ADVANCED,
                      label="Network base channels")
        form.addParam("depth", params.IntParam, default=CONTRASTIVE.model.depth, expertLevel=params.LEVEL_ADVANCED,
                      label="Network depth")
        form.addParam("seed", params.IntParam, default=CONTRASTIVE.seed, label="Random seed")
        form.addParam("extraParams", params.StringParam, default="", expertLevel=params.LEVEL_ADVANCED,
                      label="Additional training arguments",
                      help="More `cryorefine translate train` options, e.g. --lambda-nce 2 or --sampling-steps 32.")
        self._defineComputeParams(form)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.trainStep, needsGPU=True)
        self._insertFunctionStep(self.applyStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _sceneDir(self) -> str:
        if self.sceneFrom.get() == SCENE_FROM_RUN:
            return self.inputScene.get().getPath()
        return os.path.abspath(self.sceneFolder.get())

    def modelDir(self, *parts) -> str:
        return self._getExtraPath("translator", *parts)

    def translatedDir(self, *parts) -> str:
        return self._getExtraPath("translated", *parts)

    def trainStep(self):
        real = [local_path(micrograph.getFileName()) for micrograph in self.inputMicrographs.get()]
        method = [] if self.method.get() == 0 else ["--method", METHODS[self.method.get()]]
        arguments = [*method, "--scenes", self._sceneDir(), "--real", *real, "--out", self.modelDir(),
                     "--steps", self.steps.get(), "--batch-size", self.batchSize.get(), "--tile", self.tile.get(),
                     "--base-channels", self.baseChannels.get(), "--depth", self.depth.get(), "--seed", self.seed.get(),
                     "--device", self._device()]
        arguments += self._extraArguments()
        self._runCryorefine("translate", ["train", *arguments])

    def applyStep(self):
        self._runCryorefine("translate", ["apply", "--model", self.modelDir(), "--scenes", self._sceneDir(),
                                          "--out", self.translatedDir(), "--seed", self.seed.get(),
                                          "--device", self._device()])

    def createOutputStep(self):
        scene = read_scene(self._sceneDir())
        micrographs = self._createSetOfMicrographs()
        fill_scene_micrographs(micrographs, scene, self.translatedDir(), TRANSLATED_MICROGRAPH)
        self._defineOutputs(outputMicrographs=micrographs)
        box = (self.inputScene.get().getParticleBox() if self.sceneFrom.get() == SCENE_FROM_RUN
               else scene.description.largest_species_box)
        outputs = [micrographs, *self._defineSceneCoordinatesAndCtf(scene, micrographs, box)]
        inputs = [self.inputMicrographs] + ([self.inputScene] if self.sceneFrom.get() == SCENE_FROM_RUN else [])
        for pointer in inputs:
            for output in outputs:
                self._defineSourceRelation(pointer, output)

    # ------------------------------------------------------------------ info
    def _validate(self):
        errors = []
        if self.sceneFrom.get() == SCENE_FROM_RUN and self.inputScene.get() is None:
            errors.append("Choose the scene (the output of a 'build scene' run).")
        if self.sceneFrom.get() == SCENE_FROM_FOLDER and not os.path.isfile(
                os.path.join(self.sceneFolder.get() or "", SCENE_DESCRIPTION)):
            errors.append(f"The scene folder '{self.sceneFolder.get() or ''}' holds no {SCENE_DESCRIPTION}: "
                          "give a folder written by `cryorefine scene`.")
        real = self.inputMicrographs.get()
        if real is None:
            errors.append("Choose the real micrographs.")
        elif not is_mrc_stack(local_path(real.getFirstItem().getFileName())):
            errors.append(f"The real micrographs are stored as {os.path.basename(real.getFirstItem().getFileName())}; "
                          "cryorefine reads MRC files only (convert them to .mrc first).")
        for name in ("steps", "batchSize", "tile", "baseChannels", "depth"):
            if getattr(self, name).get() is None or getattr(self, name).get() <= 0:
                errors.append(f"{self.getParam(name).label.get()} must be positive.")
        return errors + self._extraArgumentsProblem()

    def _summary(self):
        if not hasattr(self, "outputMicrographs"):
            return ["Translated micrographs not ready yet."]
        return [f"Translated {self.outputMicrographs.getSize()} synthetic micrographs ({METHODS[self.method.get()]}, "
                f"{self.steps.get()} steps) to look like {self.inputMicrographs.get().getSize()} real ones; "
                f"{self.outputCoordinates.getSize()} true coordinates registered on them."]
