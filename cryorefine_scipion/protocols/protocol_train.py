"""Train the sim -> realistic model on the pairs of a simulate run."""

import os
import shutil
from enum import Enum

import pyworkflow.protocol.params as params

from cryorefine.gan.config import GAN_MODES, LossConfig, TrainConfig
from cryorefine_scipion.constants import CHECKPOINT
from cryorefine_scipion.objects import CryorefineModel
from cryorefine_scipion.protocols.protocol_base import ProtCryorefineBase, geometry_problem

# Defaults and choices are the engine's (torch-free config), so the form cannot drift from the CLI.
TRAIN, LOSS = TrainConfig(), LossConfig()


class TrainOutputs(Enum):
    outputModel = CryorefineModel


class ProtCryorefineTrain(ProtCryorefineBase):
    """Train a conditional GAN (with a radial power spectrum loss) that turns simulated
    particles into realistic ones, on the pairs written by 'simulate pairs'. A failed or
    stopped run continues from its last checkpoint; a finished model can be trained further.
    """

    _label = "train"
    _possibleOutputs = TrainOutputs

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputPairs", params.PointerParam, pointerClass="CryorefinePairs", important=True,
                      label="Simulated pairs", help="The pairs output of a 'simulate pairs' run.")
        form.addParam("continueFrom", params.PointerParam, pointerClass="CryorefineModel", allowsNull=True,
                      label="Continue training (optional)",
                      help="Start from this model's last checkpoint (same settings) instead of from scratch; "
                           "'Training steps' is then the new total.")

        form.addSection(label="Training")
        form.addParam("steps", params.IntParam, default=TRAIN.steps, label="Training steps",
                      help="Total optimiser steps. A few hundred show the method on a CPU; "
                           "real data wants thousands on a GPU.")
        form.addParam("batchSize", params.IntParam, default=TRAIN.batch_size, label="Batch size")
        form.addParam("lambdaGan", params.FloatParam, default=LOSS.lambda_gan, label="Adversarial loss weight")
        form.addParam("lambdaL1", params.FloatParam, default=LOSS.lambda_l1, label="Paired L1 loss weight",
                      help="Keep modest: large values make the generator output a denoised mean.")
        form.addParam("lambdaRpsd", params.FloatParam, default=LOSS.lambda_rpsd, label="RPSD loss weight",
                      help="Weight of the radial power spectrum term that matches the noise spectrum.")
        form.addParam("ganLoss", params.EnumParam, choices=list(GAN_MODES), default=GAN_MODES.index(LOSS.gan_mode),
                      expertLevel=params.LEVEL_ADVANCED, label="Adversarial loss")
        form.addParam("seed", params.IntParam, default=TRAIN.seed, label="Random seed")
        form.addParam("extraParams", params.StringParam, default="", expertLevel=params.LEVEL_ADVANCED,
                      label="Additional arguments",
                      help="More `cryorefine train` options, e.g. --lr-generator 1e-4 --checkpoint-every 200.")
        self._defineComputeParams(form)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.trainStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _modelDir(self, *parts) -> str:
        return self._getExtraPath("model", *parts)

    def trainStep(self):
        previous = self.continueFrom.get()
        if previous is not None and not os.path.exists(self._modelDir(CHECKPOINT)):
            shutil.copytree(previous.getPath(), self._modelDir(), dirs_exist_ok=True)
        arguments = ["--pairs", self.inputPairs.get().getPath(), "--out", self._modelDir(),
                     "--steps", self.steps.get(), "--batch-size", self.batchSize.get(),
                     "--lambda-gan", self.lambdaGan.get(), "--lambda-l1", self.lambdaL1.get(),
                     "--lambda-rpsd", self.lambdaRpsd.get(), "--gan-loss", GAN_MODES[self.ganLoss.get()],
                     "--seed", self.seed.get(), "--device", self._device()]
        # A checkpoint here means a continued model, or a run Scipion is resuming after a stop.
        if os.path.exists(self._modelDir(CHECKPOINT)):
            arguments.append("--resume")
        arguments += self._extraArguments()
        self._runCryorefine("train", arguments)

    def createOutputStep(self):
        pairs = self.inputPairs.get()
        model = CryorefineModel(path=self._modelDir(), samplingRate=pairs.getSamplingRate(),
                                boxSize=pairs.getBoxSize())
        self._defineOutputs(outputModel=model)
        self._defineSourceRelation(self.inputPairs, model)

    # ------------------------------------------------------------------ info
    def _validate(self):
        errors = []
        if self.steps.get() is None or self.steps.get() <= 0:
            errors.append("Training steps must be positive.")
        if self.batchSize.get() is None or self.batchSize.get() <= 0:
            errors.append("Batch size must be positive.")
        pairs, previous = self.inputPairs.get(), self.continueFrom.get()
        if pairs is not None and previous is not None:
            errors += geometry_problem("The pairs", pairs.getBoxSize(), pairs.getSamplingRate(),
                                       previous.getBoxSize(), previous.getSamplingRate())
        return errors + self._extraArgumentsProblem()

    def _summary(self):
        if not hasattr(self, "outputModel"):
            return ["Model not trained yet."]
        model = self.outputModel
        return [f"Trained {self.steps.get()} steps on {model.getBoxSize()} px pairs at "
                f"{model.getSamplingRate():.3f} Å/px; open the viewer for losses, spectra and sim/fake/raw panels."]
