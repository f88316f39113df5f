"""The plugin in Scipion's real Tk GUI, on a virtual screen (Xvfb): every protocol's form and every viewer
opens and draws its widgets without an error. Skips visibly where Xvfb or Tk is missing (`make test`
installs Xvfb from Debian).

Every form is photographed; with CRYOREFINE_UPDATE_SCREENSHOTS=1 the pictures replace the ones in
docs/images/scipion/ that docs/scipion.md shows. Otherwise they go to a temporary folder, so a test run
leaves the docs alone (fonts, and Scipion's state in a process that ran other tests, change pixels).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests._scipion import headless_project, launch_protocol, simulated, trained, trpv1  # noqa: F401 (fixtures)

from PIL import Image, ImageGrab  # noqa: E402
from pyworkflow.gui import Window  # noqa: E402
from pyworkflow.gui.project import ProjectWindow  # noqa: E402, F401 (form.py imported first is a circular import)
from pyworkflow.gui.form import FormWindow  # noqa: E402
from pyworkflow.utils.properties import Message  # noqa: E402

from cryorefine_scipion.protocols import (  # noqa: E402
    ProtCryorefineRefine,
    ProtCryorefineScene,
    ProtCryorefineSimulate,
    ProtCryorefineTrain,
    ProtCryorefineTranslate,
)
from cryorefine_scipion.protocols.protocol_refine import MODE_GENERATE  # noqa: E402
from cryorefine_scipion.viewers import CryorefineModelViewer, CryorefinePlotsViewer  # noqa: E402
from cryorefine_scipion.constants import GENERATED_PLOT, MODEL_PLOTS  # noqa: E402
from cryorefine_scipion.viewers.viewer_plots import PLOT_TITLES, SCREEN_FRACTION  # noqa: E402

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "images" / "scipion"
SCREEN = (1920, 1080)
DRAW_MS = 1500  # time given to a window to draw before it is inspected
HEADER_FIELDS = {"runName", "hostName"}  # Scipion draws these in the form's header, not as parameter widgets


@pytest.fixture(scope="module")
def display():
    """A virtual X screen of its own (a free display number chosen by Xvfb), as DISPLAY while the module runs."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb; `make test` does it)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen([xvfb, "-displayfd", str(write_end), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
                               "-nolisten", "tcp"], pass_fds=(write_end,), stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as announced:
        number = announced.readline().strip()
    if not number:
        server.kill()
        pytest.skip("Xvfb did not start")
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    yield os.environ["DISPLAY"]
    server.terminate()
    server.wait()
    if previous is None:
        os.environ.pop("DISPLAY")
    else:
        os.environ["DISPLAY"] = previous


@pytest.fixture(scope="module")
def project(display):
    yield from headless_project("cryorefine_gui_test")


@pytest.fixture(scope="module")
def main_window(display):
    """Scipion's own window class, standing in for the project window the forms open from (and centre on):
    it covers the screen, as a maximised project window does."""
    window = Window("cryorefine GUI test")
    window.root.configure(width=SCREEN[0], height=SCREEN[1])  # Scipion centres on the requested size
    yield window
    window.root.master.destroy()  # the hidden Tk root that Window creates


@pytest.fixture(scope="module")
def generated(project, trained, trpv1, simulated):
    return launch_protocol(project, ProtCryorefineRefine, inputModel=trained.outputModel, mode=MODE_GENERATE,
                           inputVolume=trpv1[1].outputVolume, templateParticles=simulated.outputRawParticles,
                           numberOfParticles=6, useGpu=False)


def while_shown(main_window, open_window, inspect) -> None:
    """Call `open_window()`, which enters Tk's main loop as Scipion's GUI does, run `inspect()` once the window
    has drawn, then leave the loop. An error raised by Tk while drawing, or by `inspect`, fails the test."""
    errors = []
    tk_root = main_window.root.master
    tk_root.report_callback_exception = lambda kind, error, trace: errors.append(error)

    def inspect_then_leave():
        try:
            inspect()
        except BaseException as error:  # noqa: B036 (re-raised below, outside Tk's loop)
            errors.append(error)
        finally:
            tk_root.quit()

    tk_root.after(DRAW_MS, inspect_then_leave)
    open_window()
    if errors:
        raise errors[0]


def new_windows(main_window, action) -> list:
    """The top-level windows that `action()` opened (a viewer's plots)."""
    tk_root = main_window.root.master
    before = set(tk_root.winfo_children())
    action()
    tk_root.update()
    return [child for child in tk_root.winfo_children() if child not in before and child.winfo_class() == "Toplevel"]


def assert_fits_the_screen(window) -> None:
    assert window.winfo_ismapped() and window.winfo_width() > 100 and window.winfo_height() > 100
    assert window.winfo_width() <= SCREEN_FRACTION * SCREEN[0] + 1
    assert window.winfo_height() <= SCREEN_FRACTION * SCREEN[1] + 1


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where the screenshots go: the docs' folder when asked to update it, else a temporary one."""
    if os.environ.get("CRYOREFINE_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


def screenshot(widget, path: Path) -> Image.Image:
    """What the screen shows of a widget's window, saved as PATH."""
    widget.update()
    x, y = widget.winfo_rootx(), widget.winfo_rooty()
    image = ImageGrab.grab(bbox=(x, y, x + widget.winfo_width(), y + widget.winfo_height()),
                           xdisplay=os.environ["DISPLAY"])
    image.save(path, optimize=True)
    return image


def _form_inputs(protocol_class, trpv1, simulated, trained) -> dict:
    """Inputs a user would pick, so the screenshots show filled-in forms."""
    particles, volume = trpv1
    return {
        ProtCryorefineSimulate: dict(inputParticles=particles.outputParticles, inputVolume=volume.outputVolume),
        ProtCryorefineTrain: dict(inputPairs=simulated.outputPairs),
        ProtCryorefineRefine: dict(inputModel=trained.outputModel, inputParticles=simulated.outputSimParticles),
        ProtCryorefineScene: dict(inputVolumes=[volume.outputVolume]),
        ProtCryorefineTranslate: {},
    }[protocol_class]


FORMS = {ProtCryorefineSimulate: "form_simulate", ProtCryorefineTrain: "form_train",
         ProtCryorefineRefine: "form_refine", ProtCryorefineScene: "form_scene",
         ProtCryorefineTranslate: "form_translate"}


@pytest.mark.parametrize("protocol_class", FORMS, ids=lambda cls: cls.__name__)
def test_each_protocol_form_opens_in_scipions_gui(project, main_window, screenshots, trpv1, simulated, trained,
                                                  protocol_class):
    protocol = project.newProtocol(protocol_class, **_form_inputs(protocol_class, trpv1, simulated, trained))
    form = FormWindow(Message.TITLE_NAME_RUN + protocol.getClassName(), protocol, lambda *args: None, main_window)
    form.adjustSize()

    def inspect():
        shown = {name for section in protocol.getDefinition().iterSections() for name, _ in section.iterParams()}
        shown -= HEADER_FIELDS
        assert shown <= set(form.widgetDict), f"no widget for {sorted(shown - set(form.widgetDict))}"
        image = screenshot(form.root, screenshots / f"{FORMS[protocol_class]}.png")
        assert image.width >= 600 and image.height >= 450 and len(set(image.getdata())) > 10

    try:
        while_shown(main_window, lambda: form.show(center=True), inspect)
    finally:
        form.root.destroy()


def test_the_model_viewer_opens_each_training_plot_within_the_screen(main_window, trained):
    viewer = CryorefineModelViewer(project=trained.getProject())
    windows = new_windows(main_window, lambda: viewer.visualize(trained.outputModel))
    try:
        assert [window.title() for window in windows] == [PLOT_TITLES[name] for name in MODEL_PLOTS]
        for window in windows:
            assert_fits_the_screen(window)
    finally:
        for window in windows:
            window.destroy()


@pytest.mark.parametrize("run", ["trained", "generated"])
def test_analyze_results_lists_the_runs_plots_and_opens_them(request, main_window, screenshots, run):
    """Issue 17: a generate run's viewer said "No plots yet"; it now opens the generated particles' panel."""
    protocol = request.getfixturevalue(run)
    viewer = CryorefinePlotsViewer(project=protocol.getProject(), protocol=protocol)
    opened = []

    def inspect():
        form = viewer.formWindow
        plots = list(viewer._getVisualizeDict())
        assert plots and "noPlots" not in form.widgetDict and set(plots) <= set(form.widgetDict)
        opened.extend(new_windows(main_window, lambda: viewer._visualizeParam(plots[0])))  # its eye button
        assert len(opened) == 1
        assert_fits_the_screen(opened[0])
        if run == "generated":
            assert opened[0].title() == PLOT_TITLES[GENERATED_PLOT]
            screenshot(opened[0], screenshots / "viewer_generate.png")

    try:
        while_shown(main_window, lambda: viewer.visualize(protocol, windows=main_window), inspect)
    finally:
        for window in opened:
            window.destroy()
        if viewer.formWindow is not None:
            viewer.formWindow.root.destroy()
