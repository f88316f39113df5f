"""`cryorefine simulate`: real-data agreement, RELION round trip, re-boxing, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess

import mrcfile
import numpy as np
import pytest
import torch

from cryorefine.io.mrc import read_stack
from cryorefine.io.star import CORRELATION_COLUMN, particle_parameters, read_particle_star, write_particle_star
from cryorefine.physics.forward import ForwardModel
from cryorefine.simulate import SimulateConfig, simulate_pairs
from cryorefine.synthetic import blob_map
from tests._synthetic import varied_particles, write_dataset, write_map
from tests.conftest import TEST_DATA, TRPV1, run_cli

needs_relion = pytest.mark.skipif(shutil.which("relion_project") is None, reason="RELION not installed")


def _pearson(a, b) -> float:
    a, b = np.ravel(a) - np.mean(a), np.ravel(b) - np.mean(b)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def test_real_trpv1_particles_match_their_stated_pose(tmp_path):
    """Each real particle correlates better at its refined pose than the median of 100 random poses."""
    data = TRPV1
    summary = simulate_pairs(SimulateConfig(particles=data / "particles.star", map=data / "consensus_map.mrc", out=tmp_path))
    raw, sim = read_stack(tmp_path / "raw.mrcs"), read_stack(tmp_path / "sim.mrcs")
    stated = np.array([_pearson(s, r) for s, r in zip(sim, raw)])

    star = read_particle_star(tmp_path / "raw.star")
    params = particle_parameters(star)
    volume = mrcfile.read(data / "consensus_map.mrc").astype(np.float32)
    model = ForwardModel(volume, 4.88)
    rng = np.random.default_rng(0)
    for i in range(len(star)):
        random_poses = params.subset(np.full(100, i))
        random_poses.rot, random_poses.psi = rng.uniform(-180, 180, (2, 100))
        random_poses.tilt = np.degrees(np.arccos(rng.uniform(-1, 1, 100)))
        random_r = [_pearson(s, raw[i]) for s in model.simulate(random_poses).numpy()]
        assert stated[i] > np.median(random_r), (i, stated[i], np.median(random_r))
    print(f"trpv1: mean r {stated.mean():.3f}, per particle {np.round(stated, 3)}")
    assert stated.mean() >= 0.17
    assert summary.median_correlation == pytest.approx(np.median(stated), abs=1e-4)
    assert np.allclose(star.particles[CORRELATION_COLUMN].astype(float), stated, atol=1e-4)


def test_raw_and_sim_are_reboxed_alike(tmp_path):
    """With noise-free 'raw' images made by the forward model, sim equals raw after any re-boxing."""
    box, pixel = 64, 2.0
    volume = blob_map(box, seed=5)
    optics, particles = varied_particles(16, box, pixel, seed=5)
    params_star = tmp_path / "input"
    star_path, map_path = write_dataset(params_star, volume, pixel, optics, particles, np.zeros((16, box, box), np.float32))
    clean = ForwardModel(volume, pixel).simulate(particle_parameters(read_particle_star(star_path))).numpy()
    write_dataset(params_star, volume, pixel, optics, particles, clean)
    for target_box, target_pixel in [(None, None), (48, None), (40, 3.0), (31, 2.6)]:
        out = tmp_path / f"out_{target_box}_{target_pixel}"
        summary = simulate_pairs(SimulateConfig(particles=star_path, map=map_path, out=out, box=target_box,
                                                pixel_size=target_pixel, batch_size=5))
        raw, sim = read_stack(out / "raw.mrcs"), read_stack(out / "sim.mrcs")
        r = [_pearson(s, x) for s, x in zip(sim, raw)]
        assert min(r) > 0.999, (target_box, target_pixel, min(r))
        assert raw.shape[-1] == summary.box
        with mrcfile.open(out / "raw.mrcs") as handle:
            assert handle.voxel_size.x == pytest.approx(summary.pixel_size, rel=1e-4)


@needs_relion
def test_fitted_scale_puts_sim_on_raw_intensity_scale(tmp_path):
    """raw = 3·clean + unit noise: after normalisation (background std ≈ 1) the fitted scale is ≈ 3."""
    box, pixel = 48, 2.0
    volume = blob_map(box, seed=6)
    optics, particles = varied_particles(24, box, pixel, seed=6)
    star_path, map_path = write_dataset(tmp_path / "in", volume, pixel, optics, particles, np.zeros((24, box, box), np.float32))
    clean = ForwardModel(volume, pixel).simulate(particle_parameters(read_particle_star(star_path))).numpy()
    clean /= clean.std()
    noisy = 3 * clean + np.random.default_rng(0).normal(size=clean.shape)
    write_dataset(tmp_path / "in", volume, pixel, optics, particles, noisy.astype(np.float32))
    summary = simulate_pairs(SimulateConfig(particles=star_path, map=map_path, out=tmp_path / "out", mask_diameter=80))
    raw, sim = read_stack(tmp_path / "out" / "raw.mrcs"), read_stack(tmp_path / "out" / "sim.mrcs")
    residual = raw - sim
    assert residual.std() == pytest.approx(1.0, rel=0.15)  # what is left is the noise
    assert all(0 < s for s in summary.scale_per_optics_group.values())


@needs_relion
def test_outputs_round_trip_through_project_and_relion(tmp_path):
    box, pixel = 32, 3.0
    volume = blob_map(box, seed=2)
    optics, particles = varied_particles(20, box, pixel, seed=2)
    images = np.random.default_rng(0).normal(size=(20, box, box)).astype(np.float32)
    star_path, map_path = write_dataset(tmp_path / "in", volume, pixel, optics, particles, images)
    out = tmp_path / "pairs"
    result = run_cli("simulate", "--particles", star_path, "--map", map_path, "--out", out)
    assert result.returncode == 0, result.stderr
    for name in ("raw", "sim"):
        star = read_particle_star(out / f"{name}.star")
        assert star.source_version == "3.1" and len(star) == 20
        for column in particles.columns:
            if column == "rlnImageName":
                continue
            assert np.allclose(star.particles[column].astype(float), particles[column].astype(float), atol=1e-5), column
        handled = subprocess.run(["relion_star_handler", "--i", f"{name}.star", "--o", f"{name}_checked.star"],
                                 cwd=out, capture_output=True, text=True)
        assert handled.returncode == 0, handled.stderr
        checked = read_particle_star(out / f"{name}_checked.star")
        assert CORRELATION_COLUMN in checked.particles and len(checked) == 20
        assert np.allclose(checked.particles["rlnAngleRot"].astype(float), particles["rlnAngleRot"], atol=1e-4)
        reconstructed = subprocess.run(["relion_reconstruct", "--i", f"{name}.star", "--o", f"{name}_rec.mrc", "--ctf"],
                                       cwd=out, capture_output=True, text=True)
        assert reconstructed.returncode == 0, reconstructed.stderr
        assert mrcfile.read(out / f"{name}_rec.mrc").shape == (box, box, box)


def test_reads_relion30_star_with_pixel_size_from_magnification(tmp_path):
    data = TEST_DATA / "relion30_aspire"
    star = read_particle_star(data / "sample_relion_data.star")
    assert star.source_version == "3.0"
    assert star.optics["rlnImagePixelSize"].iloc[0] == pytest.approx(5.0 * 1e4 / 37369.207031, rel=1e-6)
    params = particle_parameters(star)
    first_origin_px = 0.1996
    assert params.origin_x_angst[0] == pytest.approx(first_origin_px * star.optics["rlnImagePixelSize"].iloc[0], rel=1e-5)
    volume = blob_map(200, seed=1, n_blobs=4)
    write_map(tmp_path / "map.mrc", volume, float(star.optics["rlnImagePixelSize"].iloc[0]))
    summary = simulate_pairs(SimulateConfig(particles=data / "sample_relion_data.star", map=tmp_path / "map.mrc",
                                            out=tmp_path / "out", box=64, pixel_size=4.0))
    assert summary.particles == 4 and summary.box == 64
    assert read_particle_star(tmp_path / "out" / "sim.star").source_version == "3.1"


@pytest.mark.parametrize("name,groups", [("relion31.6opticsgroups.star", 6), ("relion5.star", 1)])
def test_reads_relion31_and_relion5_optics(name, groups):
    star = read_particle_star(TEST_DATA / "star_formats" / name)
    assert len(star.optics) == groups
    assert (star.optics["rlnImagePixelSize"].astype(float) > 0).all()
    if name == "relion5.star":
        assert star.source_version == "5.0"


def test_star_writer_round_trip(tmp_path):
    optics, particles = varied_particles(5, 32, 1.5)
    write_particle_star(tmp_path / "a.star", optics, particles)
    star = read_particle_star(tmp_path / "a.star")
    assert list(star.particles.columns) == list(particles.columns)
    assert np.allclose(star.particles["rlnDefocusU"], particles["rlnDefocusU"], atol=1e-5)
    assert (star.particles["rlnImageName"] == particles["rlnImageName"]).all()


def _dataset(tmp_path, n=6, box=32):
    volume = blob_map(box, seed=1)
    optics, particles = varied_particles(n, box, 2.0, seed=1)
    images = np.random.default_rng(1).normal(size=(n, box, box)).astype(np.float32)
    return write_dataset(tmp_path / "in", volume, 2.0, optics, particles, images)


def _corrupt(kind: str, star_path, map_path):
    text = star_path.read_text()
    if kind == "missing stack":
        (star_path.parent / "particles.mrcs").unlink()
    elif kind == "index out of range":
        star_path.write_text(text.replace("000006@particles.mrcs", "000099@particles.mrcs"))
    elif kind == "missing column":
        star_path.write_text(text.replace("_rlnDefocusU", "_rlnSomethingElse"))
    elif kind == "NaN in map":
        volume = mrcfile.read(map_path).copy()
        volume[3, 3, 3] = np.nan
        write_map(map_path, volume, 2.0)
    elif kind == "malformed":
        star_path.write_text(text[: len(text) // 2] + "\nloop_\n_rlnX #1\n")
    elif kind == "empty":
        star_path.write_text(text.split("data_particles")[0] + "data_particles\n\nloop_\n_rlnImageName #1\n")


@pytest.mark.parametrize("kind,expected", [
    ("missing stack", "not found"),
    ("index out of range", "image 99 requested"),
    ("missing column", "rlnDefocusU"),
    ("NaN in map", "NaN"),
    ("malformed", "particles.star"),
    ("empty", "no particles"),
])
def test_bad_input_gives_one_line_error_and_leaves_output_untouched(tmp_path, kind, expected):
    star_path, map_path = _dataset(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "raw.star").write_text("earlier result\n")
    _corrupt(kind, star_path, map_path)
    result = run_cli("simulate", "--particles", star_path, "--map", map_path, "--out", out)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0], lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["raw.star"]
    assert (out / "raw.star").read_text() == "earlier result\n"


def test_box_larger_than_image_is_refused(tmp_path):
    star_path, map_path = _dataset(tmp_path)
    result = run_cli("simulate", "--particles", star_path, "--map", map_path, "--out", tmp_path / "o", "--box", "64")
    assert result.returncode == 2 and "larger than the particle image" in result.stderr


def test_pixel_size_mismatch_is_refused(tmp_path):
    star_path, map_path = _dataset(tmp_path)
    write_map(map_path, blob_map(32), 20.0)
    result = run_cli("simulate", "--particles", star_path, "--map", map_path, "--out", tmp_path / "o")
    assert result.returncode == 2 and "pixel size mismatch" in result.stderr


def test_summary_and_half_maps(tmp_path):
    star_path, map_path = _dataset(tmp_path)
    write_map(tmp_path / "h1.mrc", blob_map(32, seed=1), 2.0)
    write_map(tmp_path / "h2.mrc", -blob_map(32, seed=1), 2.0)  # opposite sign: shows which half was used
    out = tmp_path / "o"
    result = run_cli("simulate", "--particles", star_path, "--map", map_path, "--out", out,
                     "--half-maps", tmp_path / "h1.mrc", tmp_path / "h2.mrc", "--no-ctf")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["particles"] == 6
    sim = read_stack(out / "sim.mrcs")
    subsets = read_particle_star(out / "sim.star").particles["rlnRandomSubset"].astype(int).to_numpy()
    reference = ForwardModel(blob_map(32, seed=1), 2.0, apply_ctf=False).simulate(
        particle_parameters(read_particle_star(out / "sim.star"), require_ctf=False)).numpy()
    signs = np.array([np.sign(_pearson(s, r)) for s, r in zip(sim, reference)]) * np.where(subsets == 1, 1, -1)
    groups = read_particle_star(out / "sim.star").particles["rlnOpticsGroup"].astype(int).to_numpy()
    for group in np.unique(groups):  # one fitted scale (of either sign) per optics group
        assert len(set(signs[groups == group])) == 1
    assert torch.tensor(sim).isfinite().all()
