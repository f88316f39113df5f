"""train / apply / generate on tiny synthetic pairs, in-process on the CPU."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
import torch

from _pairs import make_pairs
from cryorefine import spectra
from tests.conftest import run_in_process as run
from cryorefine.errors import InputError
from cryorefine.gan.checkpoint import load_checkpoint, load_generator
from cryorefine.gan.data import PairedParticles
from cryorefine.gan.losses import histogram_w1
from cryorefine.io.mrc import read_stack
from cryorefine.io.star import read_particle_star, write_particle_star

FAST = ["--base-channels", "4", "--depth", "2", "--batch-size", "4", "--log-every", "2", "--checkpoint-every", "2"]



@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"), n=24, box=32)


@pytest.fixture(scope="module")
def model(pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model"
    run("train", "--pairs", pairs, "--out", out, "--steps", 4, "--device", "cpu", *FAST)
    return out


def _weights(model_dir):
    _, state = load_checkpoint(model_dir)
    return state["generator"], state["discriminator"]


def _assert_same_weights(a, b):
    for state_a, state_b in zip(_weights(a), _weights(b)):
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), key


def test_train_writes_model_log_plots_and_baselines(model):
    for name in ("checkpoint.pt", "config.json", "log.csv", "noise_models.json",
                 "plots/panels.png", "plots/rpsd.png", "plots/losses.png"):
        assert (model / name).is_file(), name
    lines = (model / "log.csv").read_text().splitlines()
    assert lines[0].split(",")[:6] == ["step", "loss_d", "loss_g", "loss_gan", "loss_l1", "loss_rpsd"]
    assert [line.split(",")[0] for line in lines[1:]] == ["2", "4"]
    assert set(json.loads((model / "noise_models.json").read_text())) == {"gaussian", "poisson", "gaussian+poisson", "coloured", "residual"}
    assert not list(model.glob(".*partial*"))


def test_checkpoint_round_trip_and_config_check(model, tmp_path):
    generator, settings = load_generator(model)
    _, state = load_checkpoint(model)
    assert state["step"] == 4 and settings.box == 32
    for key, value in generator.state_dict().items():
        assert torch.equal(value, state["generator"][key])
    # A config.json that disagrees with the checkpoint is refused, as is a corrupt checkpoint.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "checkpoint.pt").write_bytes((model / "checkpoint.pt").read_bytes())
    config = json.loads((model / "config.json").read_text())
    config["model"]["base_channels"] = 99
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="does not match"):
        load_generator(copy)
    (copy / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="unreadable checkpoint"):
        load_generator(copy)


def test_resume_continues_the_same_run(pairs, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run("train", "--pairs", pairs, "--out", straight, "--steps", 6, "--device", "cpu", *FAST)
    run("train", "--pairs", pairs, "--out", resumed, "--steps", 3, "--device", "cpu", *FAST)
    run("train", "--pairs", pairs, "--out", resumed, "--steps", 6, "--device", "cpu", "--resume", *FAST)
    _assert_same_weights(straight, resumed)
    _, state = load_checkpoint(resumed)
    assert state["step"] == 6
    with pytest.raises(InputError, match="already holds a model"):
        run("train", "--pairs", pairs, "--out", resumed, "--steps", 8, "--device", "cpu", *FAST)
    with pytest.raises(InputError, match="lr_generator"):
        run("train", "--pairs", pairs, "--out", resumed, "--steps", 8, "--device", "cpu", "--resume",
            "--lr-generator", "0.1", *FAST)


def test_same_seed_same_model_and_same_applied_images(pairs, model, tmp_path):
    again = tmp_path / "again"
    run("train", "--pairs", pairs, "--out", again, "--steps", 4, "--device", "cpu", *FAST)
    _assert_same_weights(model, again)
    outputs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run("apply", "--model", model, "--particles", pairs / "sim.star", "--out", tmp_path / name, "--seed", seed,
            "--batch-size", 5)
        outputs[name] = read_stack(tmp_path / name / "particles.mrcs")
    assert np.array_equal(outputs["a"], outputs["b"])
    assert not np.allclose(outputs["a"], outputs["c"])


@pytest.mark.parametrize("noise", ["gan", "gaussian", "poisson", "gaussian+poisson", "coloured", "residual"])
def test_apply_keeps_metadata_and_changes_only_image_names(pairs, model, tmp_path, noise):
    out = tmp_path / "out"
    run("apply", "--model", model, "--particles", pairs / "sim.star", "--out", out, "--noise", noise, "--batch-size", 7)
    source, written = read_particle_star(pairs / "sim.star"), read_particle_star(out / "particles.star")
    # RELION's rule: relative to the current directory, absolute for an output outside it (tmp_path here).
    stack = str((out / "particles.mrcs").resolve())
    assert list(written.particles["rlnImageName"]) == [f"{i + 1:06d}@{stack}" for i in range(len(source))]
    assert written.particles.drop(columns="rlnImageName").equals(source.particles.drop(columns="rlnImageName"))
    assert written.optics.equals(source.optics)
    images, sim = read_stack(out / "particles.mrcs"), read_stack(pairs / "sim.mrcs")
    assert images.shape == sim.shape and images.dtype == np.float32
    assert np.isfinite(images).all()
    assert (images - sim).std() > 0.1  # noise was added
    if noise != "gan":  # the baselines are fitted: their noise is on raw's scale (std ~1)
        assert 0.8 < (images - sim).std() < 1.2
    if noise == "residual":  # the training sims themselves: each gets another particle's real residual
        raw = read_stack(pairs / "raw.mrcs")
        for i in range(len(sim)):
            own = raw[i] - sim[i]
            turned = [np.rot90(own, k) for k in range(4)]
            assert not any(np.allclose(np.roll(t, (dy, dx), (0, 1)), images[i] - sim[i])
                           for t in turned + [x[:, ::-1] for x in turned]
                           for dy in range(own.shape[0]) for dx in range(own.shape[1]))


def test_apply_failure_leaves_no_partial_output(pairs, model, tmp_path):
    broken = make_pairs(tmp_path / "broken", n=12, box=32)
    stack = read_stack(broken / "sim.mrcs")
    stack[9] = np.nan  # found only in the second batch, after the first was written
    with mrcfile.new(broken / "sim.mrcs", overwrite=True) as handle:  # NaN as given, past the engine's writer
        handle.set_data(stack)
        handle.voxel_size = 2.0
    out = tmp_path / "out"
    with pytest.raises(InputError, match="NaN"):
        run("apply", "--model", model, "--particles", broken / "sim.star", "--out", out, "--batch-size", 4)
    assert list(out.iterdir()) == []


def test_trained_model_makes_raw_like_diverse_noise(tmp_path):
    """End to end (about a minute): the GAN's noise spectrum beats plain sims and white Gaussian noise."""
    torch.set_num_threads(1)
    pairs = make_pairs(tmp_path / "pairs", n=320, box=32, seed=3)
    model = tmp_path / "model"
    run("train", "--pairs", pairs, "--out", model, "--steps", 300, "--device", "cpu", "--validation-fraction", "0.2",
        "--lambda-histogram", "10")  # skewed noise here: the histogram term is what matches it
    settings, _ = load_checkpoint(model)
    _, val = PairedParticles(pairs).split(settings.train.seed, 0.2, settings.train.max_validation)
    sim, raw = read_stack(pairs / "sim.mrcs")[val], read_stack(pairs / "raw.mrcs")[val]
    val_star = read_particle_star(pairs / "sim.star")
    write_particle_star(pairs / "val.star", val_star.optics, val_star.particles.iloc[val].reset_index(drop=True))
    scores, draws = {}, {}
    for noise, seed in (("gan", 0), ("gan", 1), ("gaussian", 0)):
        out = tmp_path / f"{noise}{seed}"
        run("apply", "--model", model, "--particles", pairs / "val.star", "--out", out, "--noise", noise, "--seed", seed)
        draws[noise, seed] = read_stack(out / "particles.mrcs")
        scores[noise] = float(spectra.rpsd_distance(torch.from_numpy(draws[noise, seed]), torch.from_numpy(raw))[0])
    scores["sim"] = float(spectra.rpsd_distance(torch.from_numpy(sim), torch.from_numpy(raw))[0])
    print("validation RPSD L1 vs raw:", scores)
    assert scores["gan"] < 0.25 * scores["sim"]
    assert scores["gan"] < 0.5 * scores["gaussian"]
    # The pixel-value distribution (skewed noise here) is closer to raw's than Gaussian noise is.
    w1 = {k: float(histogram_w1(torch.from_numpy(draws[k, 0]), torch.from_numpy(raw))) for k in ("gan", "gaussian")}
    assert w1["gan"] < 0.7 * w1["gaussian"]
    # Two draws for the same sims differ by noise of raw's power: var(a - b) ~ 2 var(raw - sim).
    difference = draws["gan", 0] - draws["gan", 1]
    assert difference.var() > 0.6 * 2 * (raw - sim).var()
    # ... and the difference is coloured like raw's noise, not white.
    noise_like = torch.from_numpy(difference / np.sqrt(2)), torch.from_numpy(raw - sim)
    assert spectra.rpsd_distance(*noise_like)[0] < 0.5 * scores["gaussian"]


@pytest.fixture(scope="module")
def simulated_pairs(tmp_path_factory):
    """Pairs from `cryorefine simulate` on a blob map: raw = 3·clean + unit noise."""
    from cryorefine.synthetic import blob_map
    from _synthetic import varied_particles, write_dataset

    from cryorefine.io.star import particle_parameters
    from cryorefine.physics.forward import ForwardModel

    root = tmp_path_factory.mktemp("simulated")
    box, pixel = 32, 3.0
    volume = blob_map(box, seed=2)
    optics, particles = varied_particles(32, box, pixel, seed=2)
    star, map_path = write_dataset(root / "in", volume, pixel, optics, particles, np.zeros((32, box, box), np.float32))
    clean = ForwardModel(volume, pixel).simulate(particle_parameters(read_particle_star(star))).numpy()
    noisy = 3 * clean / clean.std() + np.random.default_rng(0).normal(size=clean.shape)
    write_dataset(root / "in", volume, pixel, optics, particles, noisy.astype(np.float32))
    run("simulate", "--particles", star, "--map", map_path, "--out", root / "pairs")
    run("train", "--pairs", root / "pairs", "--out", root / "model", "--steps", 2, "--device", "cpu", *FAST)
    return root


@pytest.mark.parametrize("poses", ["uniform", "like"])
def test_generate_writes_particles_with_ground_truth(simulated_pairs, tmp_path, poses):
    root, out = simulated_pairs, tmp_path / "generated"
    like = read_particle_star(root / "pairs" / "raw.star")
    run("generate", "--model", root / "model", "--map", root / "in" / "map.mrc", "--like", root / "pairs" / "raw.star",
        "--n", 20, "--out", out, "--poses", poses, "--batch-size", 8, "--noise", "gaussian")
    star, clean_star = read_particle_star(out / "particles.star"), read_particle_star(out / "clean.star")
    noisy, clean = read_stack(out / "particles.mrcs"), read_stack(out / "clean.mrcs")
    assert len(star) == len(clean_star) == 20 and noisy.shape == clean.shape == (20, 32, 32)
    folder = out.resolve()  # outside the current directory: absolute names, as RELION reads them
    assert list(star.particles["rlnImageName"])[:2] == [f"00000{i}@{folder}/particles.mrcs" for i in (1, 2)]
    assert list(clean_star.particles["rlnImageName"])[-1] == f"000020@{folder}/clean.mrcs"
    assert star.optics.drop(columns="rlnImageSize").equals(like.optics.drop(columns="rlnImageSize"))
    # CTFs are rows of the like file; poses are too with --poses like.
    assert set(star.particles["rlnDefocusU"]) <= set(like.particles["rlnDefocusU"])
    from_like = set(star.particles["rlnAngleRot"]) <= set(like.particles["rlnAngleRot"])
    assert from_like == (poses == "like")
    # Origins are the like file's (the default --shifts like), recorded as the ground truth.
    drawn = set(zip(star.particles["rlnOriginXAngst"], star.particles["rlnOriginYAngst"]))
    assert drawn <= set(zip(like.particles["rlnOriginXAngst"], like.particles["rlnOriginYAngst"]))
    assert len(drawn) > 1
    # Clean projections on the training sims' scale; the noise on raw's.
    sim = read_stack(root / "pairs" / "sim.mrcs")
    assert 0.5 < clean.std() / sim.std() < 2.0
    assert 0.8 < (noisy - clean).std() < 1.2


def test_uniform_poses_are_uniform_on_so3(pairs):
    """Uniform rotations have cos(tilt) uniform on [-1, 1] and rot, psi uniform on the circle."""
    from cryorefine.generate import draw_particles

    table = draw_particles(read_particle_star(pairs / "raw.star"), 20000, "uniform", "zero", np.random.default_rng(0))
    cos_tilt = np.cos(np.radians(table["rlnAngleTilt"].to_numpy()))
    assert np.histogram(cos_tilt, bins=4, range=(-1, 1))[0] == pytest.approx([5000] * 4, rel=0.06)
    for column in ("rlnAngleRot", "rlnAnglePsi"):
        assert np.histogram(table[column], bins=4, range=(-180, 180))[0] == pytest.approx([5000] * 4, rel=0.06)


@pytest.mark.parametrize("poses", ["uniform", "like"])
def test_drawn_shifts_follow_the_like_files_or_are_zero(simulated_pairs, poses):
    """--shifts like resamples the like file's origins (with --poses like, each pose's own); zero centres all."""
    from cryorefine.generate import draw_particles

    star = read_particle_star(simulated_pairs / "pairs" / "raw.star")
    like, origins = star.particles, ["rlnOriginXAngst", "rlnOriginYAngst"]
    drawn = draw_particles(star, 4000, poses, "like", np.random.default_rng(1))
    assert drawn[origins].std().to_numpy() == pytest.approx(like[origins].std(ddof=0).to_numpy(), rel=0.1)
    rows = [tuple(r) for r in like[origins].to_numpy()]
    assert {tuple(r) for r in drawn[origins].to_numpy()} <= set(rows)
    if poses == "like":  # each resampled pose keeps its own origin
        own = dict(zip(like["rlnAngleRot"], rows))
        assert all(own[rot] == tuple(r) for rot, r in zip(drawn["rlnAngleRot"], drawn[origins].to_numpy()))
    zero = draw_particles(star, 10, poses, "zero", np.random.default_rng(1))
    assert (zero[origins].to_numpy() == 0).all()


def test_training_on_a_handful_of_pairs_is_warned_about(pairs, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        run("train", "--pairs", pairs, "--out", tmp_path / "m", "--steps", 1, "--device", "cpu", *FAST)
    assert any("far too few" in record.getMessage() for record in caplog.records)


def test_the_model_records_its_pixel_size_and_refuses_another(simulated_pairs, tmp_path):
    """Issue 15: a model trained at 3 Å/px made noise of 3 Å/px frequencies for any input; now apply and
    generate refuse images of another pixel size, in one line naming the file. Older models (no pixel size
    recorded) are still read, checked by their box."""
    root = simulated_pairs
    config = json.loads((root / "model" / "config.json").read_text())
    assert config["pixel_size"] == 3.0
    sim = read_particle_star(root / "pairs" / "sim.star")
    other = tmp_path / "other.star"
    write_particle_star(other, sim.optics.assign(rlnImagePixelSize=2.0), sim.particles)
    for command in (["apply", "--particles", other], ["generate", "--like", other, "--map", root / "in" / "map.mrc",
                                                       "--n", 2, "--noise", "gaussian"]):
        with pytest.raises(InputError, match="images are 2 Å/px but the model was trained at 3 Å/px"):
            run(command[0], "--model", root / "model", *command[1:], "--out", tmp_path / "out")
        assert not (tmp_path / "out").exists()

    older = tmp_path / "older"
    older.mkdir()
    (older / "checkpoint.pt").write_bytes((root / "model" / "checkpoint.pt").read_bytes())
    (older / "noise_models.json").write_bytes((root / "model" / "noise_models.json").read_bytes())
    state = torch.load(older / "checkpoint.pt", weights_only=True)
    del state["config"]["pixel_size"]
    torch.save(state, older / "checkpoint.pt")
    assert load_checkpoint(older)[0].pixel_size is None
    run("apply", "--model", older, "--particles", other, "--out", tmp_path / "applied", "--noise", "gaussian")


def test_the_model_records_the_training_sims_scale_and_generate_compares_with_it(simulated_pairs):
    """Issue 15: the model folder records the sim scale; generate warns when --like is not the training data."""
    from cryorefine.generate import scale_mismatch

    root = simulated_pairs
    recorded = json.loads((root / "model" / "config.json").read_text())["sim_scales"]
    fitted = json.loads((root / "pairs" / "summary.json").read_text())["scale_per_optics_group"]
    assert recorded == fitted and all(value > 0 for value in recorded.values())
    trained = {int(group): value for group, value in recorded.items()}
    assert scale_mismatch(trained, trained) is None and scale_mismatch(trained, None) is None
    tripled = {group: 3 * value for group, value in trained.items()}
    assert "differs from the training pairs'" in scale_mismatch(tripled, trained)
