from cryorefine_scipion.viewers.viewer_plots import CryorefineModelViewer, CryorefinePlotsViewer, PngView

__all__ = ["CryorefineModelViewer", "CryorefinePlotsViewer", "PngView"]
