"""The Scipion plugin in a real headless Scipion (pyworkflow + pwem): conversions, protocols, viewers.

Nothing of Scipion is mocked: a project is created in a temporary SCIPION_USER_DATA, the real
TRPV1 particles are imported with Scipion's RELION importer, and the protocols run the
`cryorefine` command line in Scipion's own subprocesses. Skips visibly when Scipion is absent.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from PIL import Image

from tests._scipion import TRAIN_STEPS, headless_project, simulated, trained, trpv1  # noqa: F401 (fixtures)
from tests._scipion import launch_protocol as _launch
from tests.conftest import TRPV1, run_cli


from pwem.constants import ALIGN_PROJ  # noqa: E402
from pwem.protocols import ProtImportParticles  # noqa: E402
from pyworkflow.plugin import Domain  # noqa: E402
from pyworkflow.viewer import DESKTOP_TKINTER  # noqa: E402

from cryorefine.io.star import particle_parameters, read_particle_star  # noqa: E402
from cryorefine.physics.euler import relion_rotation  # noqa: E402
from cryorefine_scipion.constants import SIM_CORRELATION_ATTR  # noqa: E402
from cryorefine_scipion.convert import (  # noqa: E402
    RelionPose,
    read_images,
    relion_pose,
    scipion_matrix,
    write_particles_star,
)
from cryorefine_scipion.protocols import (  # noqa: E402
    ProtCryorefineRefine,
    ProtCryorefineSimulate,
    ProtCryorefineTrain,
)
from cryorefine_scipion.viewers import CryorefineModelViewer, CryorefinePlotsViewer  # noqa: E402


def test_the_protocol_offers_exactly_the_engines_noise_models():
    from cryorefine.gan.config import NOISE_CHOICES
    from cryorefine_scipion.protocols.protocol_refine import NOISE_MODELS

    assert NOISE_MODELS == NOISE_CHOICES


def _engine_default(command: str, dest: str):
    """What the engine's command line uses when the option is not given."""
    from cryorefine.cli import build_parser
    from cryorefine.unpaired.config import UnpairedConfig

    args = vars(build_parser().parse_args([*command.split(), *ENGINE_ARGS[command]]))
    if args[dest] is None and command == "translate train":  # filled in from the method's config (contrastive)
        return getattr(UnpairedConfig, dest)
    return args[dest]


# (protocol, form parameter) -> (engine command, its option's dest): the form's default (an enum's chosen
# word) and its choices must be the command line's, so the adapter cannot drift from the engine.
FORM_DEFAULTS = {
    **{("ProtCryorefineTrain", param): ("train", dest) for param, dest in (
        ("steps", "steps"), ("batchSize", "batch_size"), ("lambdaGan", "lambda_gan"), ("lambdaL1", "lambda_l1"),
        ("lambdaRpsd", "lambda_rpsd"), ("ganLoss", "gan_loss"), ("seed", "seed"))},
    ("ProtCryorefineRefine", "noise"): ("apply", "noise"), ("ProtCryorefineRefine", "generateNoise"): ("generate", "noise"),
    ("ProtCryorefineRefine", "poses"): ("generate", "poses"),
    **{("ProtCryorefineTranslate", param): ("translate train", dest) for param, dest in (
        ("method", "method"), ("steps", "steps"), ("batchSize", "batch_size"), ("tile", "tile"),
        ("baseChannels", "base_channels"), ("depth", "depth"), ("seed", "seed"))},
}
ENGINE_ARGS = {"train": ["--pairs", "p", "--out", "o"], "apply": ["--model", "m", "--particles", "p", "--out", "o"],
               "generate": ["--model", "m", "--map", "m", "--like", "l", "--n", "1", "--out", "o"],
               "translate train": ["--scenes", "s", "--real", "r", "--out", "o"]}


@pytest.mark.parametrize("protocol,param", FORM_DEFAULTS)
def test_form_defaults_and_choices_are_the_engines(protocol, param):
    import cryorefine_scipion.protocols as protocols

    command, dest = FORM_DEFAULTS[(protocol, param)]
    form = getattr(protocols, protocol)().getDefinition().getParam(param)
    default = form.default.get()
    if hasattr(form, "choices"):
        action = next(a for a in _subparser(command)._actions if a.dest == dest)
        assert list(form.choices) == list(action.choices), f"{protocol}.{param} offers other choices than the engine"
        default = form.choices[int(default)]
    engine = _engine_default(command, dest)
    default = type(engine)(default)  # pyworkflow keeps a default as text
    assert default == engine, f"{protocol}.{param}: form default {default!r}, engine default {engine!r}"


def _subparser(command: str):
    import argparse

    from cryorefine.cli import build_parser

    parser = build_parser()
    for word in command.split():
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return parser


def _pearson(a, b) -> float:
    a, b = np.ravel(a) - np.mean(a), np.ravel(b) - np.mean(b)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _astigmatism(u: float, v: float, angle_deg: float) -> np.ndarray:
    """The defocus quadratic form; equal for equivalent (U, V, angle) triples."""
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    q = np.array([[c, s], [-s, c]])
    return q.T @ np.diag([u, v]) @ q


# ---------------------------------------------------------------- pure conversions


@pytest.mark.parametrize("seed", range(3))
def test_pose_round_trip_reproduces_rotation_and_origin(seed):
    rng = np.random.default_rng(seed)
    poses = [RelionPose(*rng.uniform([-180, 0, -180], [180, 180, 180]), *rng.uniform(-20, 20, 2)) for _ in range(200)]
    poses += [RelionPose(30.0, 0.0, 40.0, 3.0, -2.0), RelionPose(-50.0, 180.0, 10.0, -1.5, 4.0)]  # gimbal lock
    for pose in poses:
        back = relion_pose(scipion_matrix(pose, pixel_size=1.7), pixel_size=1.7)
        np.testing.assert_allclose(relion_rotation(back.rot, back.tilt, back.psi),
                                   relion_rotation(pose.rot, pose.tilt, pose.psi), atol=1e-9)
        assert back.origin_x_angst == pytest.approx(pose.origin_x_angst, abs=1e-9)
        assert back.origin_y_angst == pytest.approx(pose.origin_y_angst, abs=1e-9)


def test_relion_rotation_is_zyz_and_scipion_keeps_its_transpose():
    """A = Rz(psi)Ry(tilt)Rz(rot) with RELION's signs; T[:3,:3] = Aᵀ and T[:3,3] = Aᵀ·origin_px."""
    a = relion_rotation(90.0, 0.0, 0.0)
    np.testing.assert_allclose(a, [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-12)
    a = relion_rotation(0.0, 90.0, 0.0)
    np.testing.assert_allclose(a, [[0, 0, -1], [0, 1, 0], [1, 0, 0]], atol=1e-12)
    pose = RelionPose(10.0, 70.0, -35.0, 4.0, -6.0)
    matrix = scipion_matrix(pose, pixel_size=2.0)
    a = relion_rotation(10.0, 70.0, -35.0)
    np.testing.assert_allclose(matrix[:3, :3], a.T)
    np.testing.assert_allclose(a @ matrix[:3, 3], [2.0, -3.0, 0.0], atol=1e-12)


def test_plugin_is_discovered_and_never_imports_torch():
    """The entry point registers protocols, objects and viewers; the plugin stays a launcher."""
    assert "cryorefine_scipion" in Domain.getPlugins()
    assert {"ProtCryorefineSimulate", "ProtCryorefineTrain", "ProtCryorefineRefine"} <= set(Domain.getProtocols())
    assert {"CryorefinePairs", "CryorefineModel"} <= set(Domain.getObjects())
    assert {"CryorefineModelViewer", "CryorefinePlotsViewer"} <= set(Domain.getViewers())
    code = ("import sys, cryorefine_scipion.protocols, cryorefine_scipion.viewers; "
            "assert 'torch' not in sys.modules, 'the plugin imported torch'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- a headless project


@pytest.fixture(scope="module")
def project():
    yield from headless_project("cryorefine_plugin_test")


def _assert_same_particles_metadata(output, source):
    """Poses, CTF and acquisition equal the source particle's with the same id."""
    assert output.getSize() == source.getSize()
    assert output.getSamplingRate() == pytest.approx(source.getSamplingRate())
    assert output.getAlignment() == ALIGN_PROJ and output.hasCTF()
    for particle in output.iterItems():
        original = source[particle.getObjId()]
        np.testing.assert_array_equal(particle.getTransform().getMatrix(), original.getTransform().getMatrix())
        for getter in ("getDefocusU", "getDefocusV", "getDefocusAngle", "getPhaseShift"):
            assert getattr(particle.getCTF(), getter)() == getattr(original.getCTF(), getter)()
        assert particle.getAcquisition().getVoltage() == original.getAcquisition().getVoltage()
        assert particle.getAcquisition().getSphericalAberration() == original.getAcquisition().getSphericalAberration()


def test_relion_import_keeps_3d_alignment_and_agrees_with_our_conversion(trpv1):
    """Scipion's RELION importer guesses 2D/3D from the first row: check the angles survived,
    and that its transforms equal ours (two independent implementations of the convention)."""
    particles = trpv1[0].outputParticles
    star = read_particle_star(TRPV1 / "particles.star")
    params = particle_parameters(star)
    assert particles.getSize() == len(star) == 10
    assert particles.getAlignment() == ALIGN_PROJ
    for i, particle in enumerate(particles.iterItems(orderBy="id")):
        pose = RelionPose(params.rot[i], params.tilt[i], params.psi[i], params.origin_x_angst[i],
                          params.origin_y_angst[i])
        np.testing.assert_allclose(particle.getTransform().getMatrix(), scipion_matrix(pose, 4.88), atol=1e-5)


def test_star_round_trip_reproduces_poses_ctf_and_images(trpv1, tmp_path):
    particles = trpv1[0].outputParticles
    original = read_particle_star(TRPV1 / "particles.star")
    star_path = tmp_path / "round_trip.star"
    assert write_particles_star(particles, str(star_path)) == 10
    written = read_particle_star(star_path)  # the engine's own reader
    before, after = particle_parameters(original), particle_parameters(written)
    for i in range(10):
        np.testing.assert_allclose(relion_rotation(after.rot[i], after.tilt[i], after.psi[i]),
                                   relion_rotation(before.rot[i], before.tilt[i], before.psi[i]), atol=1e-5)
        np.testing.assert_allclose(_astigmatism(after.defocus_u[i], after.defocus_v[i], after.defocus_angle[i]),
                                   _astigmatism(before.defocus_u[i], before.defocus_v[i], before.defocus_angle[i]),
                                   atol=1e-2)
    np.testing.assert_allclose(after.origin_x_angst, before.origin_x_angst, atol=1e-4)
    np.testing.assert_allclose(after.origin_y_angst, before.origin_y_angst, atol=1e-4)
    for name in ("pixel_size", "voltage", "cs", "amplitude_contrast", "random_subset"):
        np.testing.assert_allclose(getattr(after, name), getattr(before, name))
    from cryorefine.io.mrc import ParticleImages, read_stack

    np.testing.assert_array_equal(ParticleImages(written).read(np.arange(10)),
                                  read_stack(TRPV1 / "particles.mrcs"))


def test_simulate_protocol_registers_pairs_like_the_engine_run_directly(simulated, trpv1, tmp_path):
    source = trpv1[0].outputParticles
    sim, raw = simulated.outputSimParticles, simulated.outputRawParticles
    _assert_same_particles_metadata(sim, source)
    _assert_same_particles_metadata(raw, source)
    assert sim.getXDim() == raw.getXDim() == 48
    correlations = [particle.getAttributeValue(SIM_CORRELATION_ATTR) for particle in sim.iterItems()]
    assert all(0.05 < r < 1 for r in correlations), correlations  # real data: about 0.18 each
    assert simulated.outputPairs.getBoxSize() == 48
    assert "Simulated 10 particles" in simulated.summary()[0]

    direct = tmp_path / "direct"
    result = run_cli("simulate", "--particles", TRPV1 / "particles.star",
                     "--map", TRPV1 / "consensus_map.mrc", "--out", direct, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    with mrcfile.open(direct / "sim.mrcs") as handle:
        expected = np.asarray(handle.data, dtype=np.float32)
    through_scipion = read_images(sim)
    for i in range(10):
        assert _pearson(through_scipion[i], expected[i]) >= 0.999
    with mrcfile.open(direct / "raw.mrcs") as handle:
        np.testing.assert_allclose(read_images(raw), handle.data, atol=1e-4)


def test_train_protocol_registers_a_model_with_plots(trained, simulated):
    model = trained.outputModel
    assert os.path.isdir(model.getPath())
    assert model.getBoxSize() == 48 and model.getSamplingRate() == pytest.approx(4.88)
    views = CryorefineModelViewer(project=trained.getProject())._visualize(model)
    assert [os.path.basename(view.path) for view in views] == ["panels.png", "rpsd.png", "losses.png"]
    assert all(os.path.getsize(view.path) > 1000 for view in views)
    viewers = Domain.findViewers(trained, DESKTOP_TKINTER)
    assert CryorefinePlotsViewer in viewers


def test_train_protocol_continues_a_model(project, trained, simulated):
    """'Continue training' copies the model and passes --resume: the log goes on past the first run."""
    continued = _launch(project, ProtCryorefineTrain, inputPairs=simulated.outputPairs, steps=TRAIN_STEPS + 2,
                        batchSize=4, continueFrom=trained.outputModel, useGpu=False)
    with open(continued.outputModel.getPath("log.csv")) as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert max(steps) == TRAIN_STEPS + 2
    log = (Path(project.path) / continued.getLogPaths()[0]).read_text()
    assert "--resume" in log
    assert '"train" "--threads" "1" ' in log  # the form's Threads reach the engine (issue 17)


def test_a_failed_engine_run_shows_the_engines_reason_in_the_protocols_error(project, simulated):
    """Issue 17: a failed run showed only "returned non-zero exit status 2" in the GUI."""
    train = project.newProtocol(ProtCryorefineTrain, inputPairs=simulated.outputPairs, steps=TRAIN_STEPS,
                                batchSize=4, useGpu=False, extraParams="--no-such-option 3")
    assert not train.validate()
    project.launchProtocol(train, wait=True)
    assert train.isFailed()
    assert "cryorefine train: error: unrecognized arguments: --no-such-option 3" in train.getErrorMessage()


def test_engine_failure_reason_prefers_the_engines_error_line():
    from cryorefine_scipion.protocols.protocol_base import engine_failure_reason

    logged = "12:00:01 INFO loading\ncryorefine apply: error: the model is 64 px\nwarning: after\n"
    assert engine_failure_reason(logged) == "cryorefine apply: error: the model is 64 px"
    assert engine_failure_reason("Traceback ...\nRuntimeError: CUDA failed\n\n") == "RuntimeError: CUDA failed"
    assert engine_failure_reason("") == ""


def test_plots_shrink_to_fit_the_screen_keeping_their_aspect():
    """Issue 17: the loss plot opened at 1189 × 1289 px, taller than a laptop's screen."""
    from cryorefine_scipion.viewers.viewer_plots import fit_to_screen

    width, height = fit_to_screen((1189, 1289), (1920, 1080))
    assert height <= 0.8 * 1080 and width / height == pytest.approx(1189 / 1289, rel=0.01)
    assert fit_to_screen((500, 350), (1920, 1080)) == (500, 350)  # small plots are not enlarged


def test_the_generate_panel_shows_clean_images_at_their_own_contrast(monkeypatch, tmp_path):
    """Realistic noise is ~10× the clean signal: on the noisy images' grey scale the clean row would be flat."""
    from cryorefine import plots

    saved = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: saved.append(figure))
    rng = np.random.default_rng(0)
    clean = rng.normal(scale=0.1, size=(3, 16, 16))
    plots.plot_image_sets(tmp_path / "g.png", {"generated": clean + rng.normal(size=clean.shape), "clean": clean},
                          title="T", shared_grey_scale=False)
    axes = saved[0].axes
    clean_high = axes[2 * 3].get_images()[0].get_clim()[1]  # row 2 (clean), column 0
    assert clean_high == pytest.approx(np.percentile(clean, 99))
    plots.plt.close(saved[0])


def test_runs_are_named_cryorefine_and_their_label(project):
    """Issue 17: runs were named "cryorefine_scipion - <label>"."""
    assert ProtCryorefineSimulate.getClassLabel() == "cryorefine - simulate pairs"
    assert project.newProtocol(ProtCryorefineTrain).getObjLabel() == "cryorefine - train"


@pytest.mark.parametrize("protocol", ["ProtCryorefineSimulate", "ProtCryorefineTrain", "ProtCryorefineRefine",
                                      "ProtCryorefineScene", "ProtCryorefineTranslate"])
def test_use_gpu_follows_the_machine_and_a_gpu_run_on_a_host_without_one_is_refused(protocol):
    """Issue 17: 'Use GPU' defaulted to Yes everywhere, and on a CPU host the run failed with only an exit status."""
    import cryorefine_scipion.protocols as protocols
    from cryorefine.device import host_has_cuda

    prot = getattr(protocols, protocol)()
    assert prot.useGpu.get() == host_has_cuda()
    prot.useGpu.set(True)
    refused = [e for e in prot.validate() if "Use GPU is Yes" in e]
    assert bool(refused) == (not host_has_cuda())


def test_refine_apply_keeps_poses_and_ctf_and_evaluates(project, trained, simulated):
    refined = _launch(project, ProtCryorefineRefine, inputModel=trained.outputModel, mode=0,
                      inputParticles=simulated.outputSimParticles, rawParticles=simulated.outputRawParticles,
                      useGpu=False)
    output = refined.outputParticles
    _assert_same_particles_metadata(output, simulated.outputSimParticles)
    images = read_images(output)
    assert images.shape == (10, 48, 48) and np.isfinite(images).all() and images.std() > 0
    assert not np.allclose(images, read_images(simulated.outputSimParticles))
    assert os.path.exists(refined.evaluationDir("metrics.json"))
    viewer = CryorefinePlotsViewer(project=project)
    viewer.setProtocol(refined)
    plots = viewer._plots()
    assert any(path.endswith("rpsd.png") for path in plots.values()), plots


def test_refine_generate_makes_new_particles_at_template_poses(project, trained, simulated, trpv1):
    template = simulated.outputRawParticles
    generated = _launch(project, ProtCryorefineRefine, inputModel=trained.outputModel, mode=1,
                        inputVolume=trpv1[1].outputVolume, templateParticles=template,
                        numberOfParticles=6, poses=1, useGpu=False)
    template_rotations = [p.getTransform().getMatrix()[:3, :3] for p in template.iterItems()]
    template_defoci = {round(p.getCTF().getDefocusU(), 1) for p in template.iterItems()}
    for output in (generated.outputParticles, generated.outputCleanParticles):
        assert output.getSize() == 6
        assert output.getSamplingRate() == pytest.approx(4.88) and output.getXDim() == 48
        assert output.getAlignment() == ALIGN_PROJ and output.hasCTF()
        for particle in output.iterItems():
            rotation = particle.getTransform().getMatrix()[:3, :3]
            assert min(np.abs(rotation - other).max() for other in template_rotations) < 1e-4
            assert round(particle.getCTF().getDefocusU(), 1) in template_defoci
            assert particle.getCTF().getDefocusU() >= particle.getCTF().getDefocusV() > 0
            assert particle.getAcquisition().getVoltage() == 300
        assert np.isfinite(read_images(output)).all()
    # Issue 17: the viewer said "No plots yet" for generate; now it offers the particles beside their clean images.
    viewer = CryorefinePlotsViewer(project=project)
    viewer.setProtocol(generated)
    assert list(viewer._plots().values()) == [generated.generatedPlot()]
    with Image.open(generated.generatedPlot()) as panel:
        assert panel.width > 6 * 100 and panel.height > 4 * 100  # 6 particles, rows generated / clean and their |F|


def test_validation_explains_unusable_inputs(project, trained, trpv1):
    """Particles without poses or CTF, and at another pixel size, are refused with reasons."""
    folder = TRPV1
    bare = _launch(project, ProtImportParticles, importFrom=ProtImportParticles.IMPORT_FROM_FILES,
                   filesPath=str(folder), filesPattern="particles.mrcs", samplingRate=3.0, voltage=300,
                   sphericalAberration=2.0, amplitudeContrast=0.1, magnification=10000)
    simulate = project.newProtocol(ProtCryorefineSimulate, inputParticles=bare.outputParticles,
                                   inputVolume=trpv1[1].outputVolume)
    errors = " ".join(simulate.validate())
    assert "no 3D alignment" in errors and "no CTF" in errors
    refine = project.newProtocol(ProtCryorefineRefine, inputModel=trained.outputModel, mode=0,
                                 inputParticles=bare.outputParticles)
    assert "3.0000 Å/px but the model was trained at 4.8800 Å/px" in " ".join(refine.validate())
