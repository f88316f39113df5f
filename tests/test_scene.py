"""The scene builder: placement rules, ice statistics, ground truth consistent with the images."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import mrcfile
import numpy as np
import pytest
import starfile
import torch
from scipy import ndimage

from conftest import APOFERRITIN_CA, TRPV1, run_cli
from cryorefine.errors import InputError
from cryorefine.io.star import ParticleParameters
from cryorefine.physics.forward import ForwardModel
from cryorefine.scene.ice import IceConfig, correlation_length, fractal_noise, thickness_map
from cryorefine.scene.placement import Region, nearest_neighbour_distances, place_chains, place_uniform
from cryorefine.scene.species import MOTT_BETHE_VOLT_A2, load_species

SIZE = 512
SEPARATION = 24.0


def _pairwise_min(points: np.ndarray) -> float:
    return float(nearest_neighbour_distances(points).min())


@pytest.mark.parametrize("seed", range(3))
def test_uniform_never_closer_than_separation_even_when_crowded(seed):
    region = Region(SIZE, margin=10)
    points = place_uniform(400, region, SEPARATION, np.random.default_rng(seed))  # near jamming: not all fit
    assert len(points) > 250
    assert _pairwise_min(points) >= SEPARATION
    assert region.contains(points).all()


def test_chains_keep_separation_and_cluster_more_than_uniform():
    region = Region(2 * SIZE, margin=10)
    chain_nn, uniform_nn = [], []
    for seed in range(5):
        chains = place_chains(30, region, SEPARATION, np.random.default_rng(seed), chain_length=6)
        uniform = place_uniform(30, region, SEPARATION, np.random.default_rng(seed))
        assert len(chains) == 30 and _pairwise_min(chains) >= SEPARATION - 1e-9
        chain_nn.append(nearest_neighbour_distances(chains))
        uniform_nn.append(nearest_neighbour_distances(uniform))
    chain_nn, uniform_nn = np.concatenate(chain_nn), np.concatenate(uniform_nn)
    # Chain neighbours sit one step (1.15 separations) apart; uniform ones are spread over the field.
    assert np.median(chain_nn) < 1.3 * SEPARATION
    assert np.median(chain_nn) < 0.5 * np.median(uniform_nn)


def test_boundary_placement_stays_in_the_band_and_goes_round_it():
    region = Region(SIZE, margin=10, band_radius=180, band_width=30)
    points = place_uniform(40, region, SEPARATION, np.random.default_rng(0))
    assert len(points) == 40 and _pairwise_min(points) >= SEPARATION
    assert np.abs(region.distance_to_circle(points)).max() <= 15
    angles = np.arctan2(points[:, 1] - (SIZE - 1) / 2, points[:, 0] - (SIZE - 1) / 2)
    assert np.histogram(angles, bins=4, range=(-math.pi, math.pi))[0].min() >= 5  # all four quadrants used


@pytest.mark.parametrize("length_px", [8.0, 20.0])
def test_ice_noise_has_the_requested_correlation_length(length_px):
    measured = [correlation_length(fractal_noise(384, length_px, np.random.default_rng(seed))) for seed in range(3)]
    assert np.mean(measured) == pytest.approx(length_px, rel=0.15)


def test_ice_thickness_has_the_requested_mean_and_correlation():
    config = IceConfig(mean_thickness_a=350.0, correlation_length_a=60.0, roughness=0.15, gradient=0.0)
    thickness = thickness_map(384, 4.0, config, np.random.default_rng(1))
    assert thickness.mean() == pytest.approx(350.0, rel=1e-3)
    assert thickness.std() == pytest.approx(0.15 * 350.0, rel=0.1)
    assert correlation_length(thickness) * 4.0 == pytest.approx(60.0, rel=0.25)
    with_gradient = thickness_map(384, 4.0, IceConfig(350.0, 60.0, roughness=0.5, gradient=1.0),
                                  np.random.default_rng(2))
    assert with_gradient.mean() == pytest.approx(350.0, rel=1e-3)  # also after clipping thin ice
    assert with_gradient.min() > 0


def test_atomic_model_potential_integrates_to_the_form_factors(tmp_path):
    pytest.importorskip("gemmi")
    lines = []
    for i, (name, element) in enumerate([("N", "N"), ("CA", "C"), ("C", "C"), ("O", "O")]):
        lines.append(f"ATOM  {i + 1:5d}  {name:<3s} GLY A   1    {10 + 1.3 * i:8.3f}{10.0:8.3f}{10.0:8.3f}"
                     f"  1.00 20.00           {element}")
    model = tmp_path / "gly.pdb"
    model.write_text("\n".join(lines) + "\nEND\n")
    from cryorefine.scene.species import atomic_potential
    import gemmi

    structure = gemmi.read_structure(str(model))
    potential = atomic_potential(gemmi, structure, np.array([12.0, 10, 10]), 32.0, 64, 1.0)
    # Σ f_e(0) (Peng 1996): N 2.213 + 2 C 2.509 + O 1.983 Å
    expected = (2.213 + 2 * 2.509 + 1.983) * MOTT_BETHE_VOLT_A2
    assert potential.sum() == pytest.approx(expected, rel=0.05)
    species = load_species(model, 3, 1.0)
    assert species.volume.max() > 0 and species.copies == 3


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    map_path = TRPV1 / "consensus_map.mrc"
    model_path = APOFERRITIN_CA
    out = tmp_path_factory.mktemp("scene")
    species = [f"{map_path}:12:trpv1"]
    if importlib.util.find_spec("gemmi"):
        species.append(f"{model_path}:6:apoferritin")
    args = ["scene", *sum((["--species", s] for s in species), []), "--size", "384", "--pixel-size", "6",
            "--dose", "0", "--mtf", "none", "--seed", "3", "--out", out]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return out, map_path


def test_scene_writes_every_output(scene_dir):
    out, _ = scene_dir
    for name in ("micrograph_000.mrc", "clean_000.mrc", "mask_000.mrc", "ice_000.mrc", "coords_000.star", "scene.json"):
        assert (out / name).is_file(), name
    coords = starfile.read(out / "coords_000.star")
    assert {"rlnCoordinateX", "rlnAngleTilt", "rlnDefocusU", "rlnCryorefineSpecies"} <= set(coords.columns)


def test_coordinates_match_the_mask_blobs(scene_dir):
    out, _ = scene_dir
    coords = starfile.read(out / "coords_000.star")
    labels = mrcfile.read(out / "mask_000.mrc").astype(int)
    _, n_blobs = ndimage.label(labels > 0)
    assert n_blobs == len(coords) == labels.max()
    for index, row in coords.reset_index(drop=True).iterrows():
        blob = np.argwhere(labels == index + 1)
        centroid_y, centroid_x = blob.mean(axis=0)
        assert math.hypot(centroid_x - row.rlnCoordinateX, centroid_y - row.rlnCoordinateY) < 5  # pixels


def test_projections_at_the_stated_coordinates_correlate_with_the_clean_micrograph(scene_dir):
    out, map_path = scene_dir
    coords = starfile.read(out / "coords_000.star")
    coords = coords[coords.rlnCryorefineSpecies == "trpv1"].reset_index(drop=True)
    clean = mrcfile.read(out / "clean_000.mrc").astype(np.float64)
    species = load_species(map_path, 1, 6.0)
    box = species.box
    n = len(coords)
    column = lambda name: coords[name].to_numpy(dtype=np.float64)  # noqa: E731
    whole = np.floor(coords[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy()).astype(int)
    fraction = coords[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy() - whole

    def simulate(rot, tilt, psi):
        params = ParticleParameters(
            rot=rot, tilt=tilt, psi=psi, origin_x_angst=-fraction[:, 0] * 6.0, origin_y_angst=-fraction[:, 1] * 6.0,
            defocus_u=column("rlnDefocusU"), defocus_v=column("rlnDefocusV"), defocus_angle=column("rlnDefocusAngle"),
            phase_shift=np.zeros(n), bfactor=np.zeros(n), ctf_scale=np.ones(n), voltage=np.full(n, 300.0),
            cs=np.full(n, 2.7), amplitude_contrast=np.full(n, 0.1), pixel_size=np.full(n, 6.0),
            optics_group=np.ones(n, int), random_subset=np.zeros(n, int))
        with torch.no_grad():
            return ForwardModel(species.volume, 6.0).simulate(params).numpy()

    def correlations(images):
        scores = []
        for (x, y), image in zip(whole, images):
            patch = -clean[y - box // 2 : y - box // 2 + box, x - box // 2 : x - box // 2 + box]  # protein dark
            scores.append(np.corrcoef(patch.ravel(), image.ravel())[0, 1])
        return np.array(scores)

    true_pose = correlations(simulate(column("rlnAngleRot"), column("rlnAngleTilt"), column("rlnAnglePsi")))
    rng = np.random.default_rng(0)
    other_pose = correlations(simulate(rng.uniform(0, 360, n), np.degrees(np.arccos(rng.uniform(-1, 1, n))),
                                       rng.uniform(0, 360, n)))
    assert np.median(true_pose) > 0.8
    assert np.median(true_pose) > np.median(other_pose) + 0.2


def test_unknown_species_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "thing.txt"
    bad.write_text("x")
    result = run_cli("scene", "--species", bad, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "unknown species file type" in result.stderr and "Traceback" not in result.stderr


def test_thicker_ice_is_darker_and_the_dose_sets_the_counts():
    from cryorefine.scene.micrograph import form_image
    from cryorefine.scene.optics import Defocus, Optics

    thickness = thickness_map(256, 4.0, IceConfig(400.0, 200.0, roughness=0.3, gradient=1.0), np.random.default_rng(0))
    empty = np.zeros((256, 256), dtype=np.float32)
    args = (empty, thickness, 4.0, Defocus(15000, 14800, 30), Optics(), 3500.0)
    clean, noisy = form_image(*args, dose_per_a2=None, mtf="none", rng=np.random.default_rng(0))
    assert np.corrcoef(clean.ravel(), thickness.ravel())[0, 1] < -0.8  # inelastic loss darkens thick ice
    clean, noisy = form_image(*args, dose_per_a2=40.0, mtf="none", rng=np.random.default_rng(0))
    expected = 40.0 * 16 * np.exp(-thickness / 3500.0)
    assert clean.mean() == pytest.approx(expected.mean(), rel=0.01)
    assert (noisy - clean).var() == pytest.approx(clean.mean(), rel=0.05)  # Poisson: variance = mean


def test_a_rerun_with_fewer_micrographs_leaves_no_stale_files(tmp_path):
    """The issue-16 case: `--n-micrographs 1` over a 2-micrograph scene kept micrograph 001 beside a scene.json listing one."""
    out = tmp_path / "scene"
    base = ["scene", "--species", f"{TRPV1 / 'consensus_map.mrc'}:2", "--size", "96", "--pixel-size", "6",
            "--dose", "0", "--mtf", "none", "--seed", "1", "--out", out]
    assert run_cli(*base, "--n-micrographs", "2").returncode == 0
    (out / "notes.txt").write_text("the user's own file")
    assert (out / "micrograph_001.mrc").is_file()
    assert run_cli(*base, "--n-micrographs", "1").returncode == 0
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert left == ["clean_000.mrc", "coords_000.star", "ice_000.mrc", "mask_000.mrc", "micrograph_000.mrc",
                    "notes.txt", "scene.json"]


@pytest.mark.parametrize("kind", ["loop", "fifo"])
def test_an_output_that_is_a_symlink_loop_or_a_fifo_is_one_line(tmp_path, kind):
    out = tmp_path / "out"
    if kind == "loop":
        out.symlink_to(out)
    else:
        os.mkfifo(out)
    result = run_cli("scene", "--species", f"{TRPV1 / 'consensus_map.mrc'}:1", "--size", "64", "--pixel-size", "6",
                     "--dose", "0", "--out", out)
    expected = "leads nowhere" if kind == "loop" else "not a directory"
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2 and len(errors) == 1 and expected in errors[0] and "Traceback" not in result.stderr


def test_a_full_disk_during_scene_names_the_file_and_keeps_the_earlier_scene(tmp_path):
    """RLIMIT_FSIZE makes writes fail as a full disk or quota would; the message used to name no file."""
    import resource
    import subprocess
    import sys

    out = tmp_path / "scene"
    base = ["scene", "--species", f"{TRPV1 / 'consensus_map.mrc'}:2", "--size", "96", "--pixel-size", "6",
            "--dose", "0", "--mtf", "none", "--seed", "1", "--out", out]
    assert run_cli(*base).returncode == 0
    earlier = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    limit = 100_000  # a 256² float32 micrograph is 262 kB

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, "-m", "cryorefine.cli", *map(str, base), "--size", "256"],
                            capture_output=True, text=True, preexec_fn=small_files)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "micrograph_000.mrc: could not write (file too large" in errors[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == earlier
    assert not list(out.glob(".cryorefine-partial-*"))


def test_the_pixel_size_defaults_to_the_first_maps_and_a_map_without_one_is_one_line(tmp_path):
    """Issue 17: the scene used 1.0 Å whatever the map; a RELION or Scipion user expects the map's sampling."""
    out = tmp_path / "scene"
    common = ["--size", "96", "--dose", "0", "--mtf", "none", "--device", "cpu"]
    assert run_cli("scene", "--species", f"{TRPV1 / 'consensus_map.mrc'}:1", *common, "--out", out).returncode == 0
    with mrcfile.open(out / "micrograph_000.mrc", header_only=True) as header:
        assert header.voxel_size.x == pytest.approx(4.88, rel=1e-5)
    # exactly the value a user would type, not float32's 4.8800001 (which changes the placement)
    assert json.loads((out / "scene.json").read_text())["config"]["pixel_size"] == 4.88

    unsampled = tmp_path / "no_voxel.mrc"
    with mrcfile.new(unsampled) as handle:
        handle.set_data(mrcfile.read(TRPV1 / "consensus_map.mrc"))
        handle.voxel_size = 0.0
    result = run_cli("scene", "--species", f"{unsampled}:1", *common, "--out", tmp_path / "other")
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2 and len(errors) == 1 and "no usable voxel size" in errors[0], result.stderr
    assert str(unsampled) in errors[0] and not (tmp_path / "other").exists()


def test_scene_json_is_the_engines_description_and_a_damaged_one_is_one_line(tmp_path):
    """Issue 15: scene.json is written and read only through cryorefine.artifacts.SceneDescription (translate,
    the RELION wrapper and the Scipion plugin), so a field renamed there is renamed for every reader."""
    from cryorefine.artifacts import SceneDescription

    out = tmp_path / "scene"
    assert run_cli("scene", "--species", f"{TRPV1 / 'consensus_map.mrc'}:2", "--size", "96", "--dose", "0",
                   "--mtf", "none", "--voltage", "200", "--n-micrographs", "2", "--out", out).returncode == 0
    scene = SceneDescription.read(out)
    assert (scene.size, scene.pixel_size, scene.voltage_kv, scene.dose_per_a2) == (96, 4.88, 200.0, None)
    assert len(scene.micrographs) == 2 and scene.largest_species_box == scene.species[0].box
    assert json.loads((out / "scene.json").read_text())["version"] == 1
    assert SceneDescription.read(out).to_dict() == json.loads((out / "scene.json").read_text())

    values = json.loads((out / "scene.json").read_text())
    del values["config"]["optics"]
    (out / "scene.json").write_text(json.dumps(values))
    with pytest.raises(InputError, match="scene.json: malformed scene description"):
        SceneDescription.read(out)
    result = run_cli("translate", "apply", "--baseline", "poisson", "--scenes", out, "--out", tmp_path / "t")
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2 and len(errors) == 1 and "malformed scene description" in errors[0], result.stderr
