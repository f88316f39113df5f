"""Open the PNG plots the engine writes: losses, RPSD curves and sim/fake/raw panels."""

import glob
import os

import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer, View, Viewer

from cryorefine.artifacts import EvaluationFolder, ModelFolder
from cryorefine_scipion.constants import GENERATED_PLOT, MODEL_PLOTS
from cryorefine_scipion.objects import CryorefineModel
from cryorefine_scipion.protocols import ProtCryorefineRefine, ProtCryorefineTrain

PLOT_TITLES = {
    ModelFolder.PANELS_PLOT: "Sim / fake / raw panels",
    ModelFolder.RPSD_PLOT: "Radial power spectra (RPSD)",
    ModelFolder.LOSSES_PLOT: "Loss curves",
    "histograms.png": "Pixel value histograms",
    "frc.png": "Fourier ring correlation with the simulations",
    "noise_power.png": "Noise power spectra",
    GENERATED_PLOT: "Generated particles and their clean images",
}


SCREEN_FRACTION = 0.8  # a plot window takes at most this share of the screen's height and width


def fit_to_screen(size: tuple, screen: tuple, fraction: float = SCREEN_FRACTION) -> tuple:
    """(width, height) scaled down, aspect kept, to fit `fraction` of the screen; never enlarged."""
    scale = min(1.0, fraction * screen[0] / size[0], fraction * screen[1] / size[1])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


class PngView(View):
    """A window showing one PNG file, shrunk to fit the screen (the engine saves plots at 100 dpi,
    which can be taller than a laptop's screen)."""

    def __init__(self, path: str, title: str = ""):
        View.__init__(self)
        self.path = os.path.abspath(path)
        self.title = title or os.path.basename(path)
        self.window = None

    def show(self):
        import tkinter as tk

        from PIL import Image, ImageTk

        self.window = tk.Toplevel()
        self.window.title(self.title)
        picture = Image.open(self.path)
        screen = (self.window.winfo_screenwidth(), self.window.winfo_screenheight())
        size = fit_to_screen(picture.size, screen)
        if size != picture.size:
            picture = picture.resize(size, Image.LANCZOS)
        image = ImageTk.PhotoImage(picture, master=self.window)
        label = tk.Label(self.window, image=image)
        label.image = image  # keep a reference, or Tk drops the picture
        label.pack()


def model_plots(model: CryorefineModel) -> list:
    """The training plots of a model, in a fixed order, that exist."""
    return [model.getPlot(name) for name in MODEL_PLOTS if os.path.exists(model.getPlot(name))]


def protocol_plots(protocol) -> list:
    """Every plot a cryorefine protocol's engine runs wrote (model plots, evaluation plots)."""
    if isinstance(protocol, ProtCryorefineTrain) and hasattr(protocol, "outputModel"):
        return model_plots(protocol.outputModel)
    if isinstance(protocol, ProtCryorefineRefine):
        generated = [protocol.generatedPlot()] if os.path.exists(protocol.generatedPlot()) else []
        return generated + sorted(glob.glob(protocol.evaluationDir(EvaluationFolder.PLOTS, "*.png")))
    return []


def _title(path: str) -> str:
    return PLOT_TITLES.get(os.path.basename(path), os.path.basename(path))


class CryorefineModelViewer(Viewer):
    """Double-click a trained model: its loss, RPSD and panel plots."""

    _label = "cryorefine training plots"
    _targets = [CryorefineModel]
    _environments = [DESKTOP_TKINTER]

    def _visualize(self, obj, **kwargs):
        return [PngView(path, _title(path)) for path in model_plots(obj)]


class CryorefinePlotsViewer(ProtocolViewer):
    """Analyze results of a train or refine run: one entry per plot the engine wrote."""

    _label = "cryorefine plots"
    _targets = [ProtCryorefineTrain, ProtCryorefineRefine]
    _environments = [DESKTOP_TKINTER]

    def _plots(self) -> dict:
        return {f"showPlot{i}": path for i, path in enumerate(protocol_plots(self.protocol))}

    def _defineParams(self, form):
        form.addSection(label="Plots")
        plots = self._plots()
        if not plots:
            form.addParam("noPlots", params.LabelParam, label="No plots yet: the run has not written any.")
        for key, path in plots.items():
            form.addParam(key, params.LabelParam, label=_title(path))

    def _getVisualizeDict(self):
        return {key: (lambda _key, path=path: [PngView(path, _title(path))]) for key, path in self._plots().items()}
