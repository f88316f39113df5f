"""Our particle STAR files in the tools users feed them to.

cryoDRGN 4.3's `parse_pose_star` and `parse_ctf_star` must read every pose and CTF value of the outputs of
simulate, apply and generate as written (a missing column reads as NaN there, not as RELION's default), and
RELION's `relion_reconstruct` must rebuild the map that generated particles were projected from, which it
does only if their recorded angles and origin shifts follow RELION's conventions.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryorefine.physics.euler import relion_rotation
from tests.conftest import TRPV1, run_cli

needs_cryodrgn = pytest.mark.skipif(importlib.util.find_spec("cryodrgn") is None,
                                    reason="cryoDRGN not installed (make test installs it; see the Makefile)")
needs_relion = pytest.mark.skipif(shutil.which("relion_reconstruct") is None,
                                  reason="RELION not installed (apt-get install relion)")

TINY_MODEL = ["--base-channels", "4", "--depth", "2", "--batch-size", "4", "--log-every", "2",
              "--checkpoint-every", "2", "--steps", "2"]
GENERATED = 1000  # enough uniform views for a reconstruction to 15 Å of the 48 px, 4.88 Å map
OUTPUTS = ("Pairs/raw.star", "Pairs/sim.star", "Applied/particles.star", "Generated/particles.star",
           "Generated/clean.star")
PARTICLE_CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor",
                        "rlnCtfScalefactor")
OPTICS_COLUMNS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize",
                  "rlnImageSize")
# The columns of cryoDRGN's ctf.pkl, in its order (cryodrgn/commands/parse_ctf_star.py): box (px), pixel (Å),
# defocus U and V (Å), astigmatism angle (°), voltage (kV), Cs (mm), amplitude contrast, phase shift (°).
CRYODRGN_CTF = ("rlnImageSize", "rlnImagePixelSize", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
                "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnPhaseShift")
# Each command through its own add_args/main, as cryoDRGN's `cryodrgn` script calls it. The script itself
# imports every command (Jupyter, UMAP, seaborn...), which the minimal install of the Makefile leaves out;
# one process for all the calls, as cryoDRGN and torch take seconds to import.
RUN_CRYODRGN_COMMANDS = """
import argparse, importlib, json, sys
for command, *argv in json.loads(sys.argv[1]):
    module = importlib.import_module("cryodrgn.commands." + command)
    parser = argparse.ArgumentParser()
    module.add_args(parser)
    module.main(parser.parse_args(argv))
"""
# Real-space correlation of a reconstruction from the clean generated particles with the map, both low-passed
# to 15 Å, measured 1.000 (FSC >= 0.99 in every shell to Nyquist): anything below this threshold is an error,
# not noise. Measured for wrong geometry: origins negated 0.45, origins left out 0.72, tilt negated 0.45.
CLEAN_CORRELATION = 0.95
# The realistic (noisy) particles to 20 Å: measured 0.98 (negated origins give 0.47 on clean ones).
NOISY_CORRELATION = 0.9


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder with the bundled TRPV1 particles and map, and the outputs of simulate, train (tiny),
    apply and generate run in it, each stack named relative to it as RELION reads them.

    The particles' STAR leaves out the CTF terms RELION takes as neutral (phase shift, B-factor and scale),
    as files from a CTF fit without a phase plate do: every output must state them all the same."""
    folder = tmp_path_factory.mktemp("interop")
    for name in ("particles.mrcs", "consensus_map.mrc"):
        shutil.copyfile(TRPV1 / name, folder / name)
    tables = starfile.read(TRPV1 / "particles.star", always_dict=True)
    tables["particles"] = tables["particles"].drop(columns=["rlnPhaseShift", "rlnCtfBfactor"])
    starfile.write(tables, folder / "particles.star")
    steps = [
        ("simulate", "--particles", "particles.star", "--map", "consensus_map.mrc", "--out", "Pairs"),
        ("train", "--pairs", "Pairs", "--out", "Model", *TINY_MODEL),
        ("apply", "--model", "Model", "--particles", "Pairs/sim.star", "--out", "Applied"),
        ("generate", "--model", "Model", "--map", "consensus_map.mrc", "--like", "Pairs/raw.star",
         "--n", GENERATED, "--batch-size", 250, "--out", "Generated"),
    ]
    for argv in steps:
        result = run_cli(*argv, "--device", "cpu", cwd=folder)
        assert result.returncode == 0, result.stderr
    return folder


def _written(path: Path) -> pd.DataFrame:
    """Each particle's row with its optics group's values, exactly as the file states them (no defaults)."""
    tables = starfile.read(path, always_dict=True)
    return tables["particles"].merge(tables["optics"], on="rlnOpticsGroup", how="left")


@pytest.mark.parametrize("star", OUTPUTS)
def test_every_ctf_column_is_written_explicitly(project, star):
    tables = starfile.read(project / star, always_dict=True)
    for table, columns in ((tables["particles"], PARTICLE_CTF_COLUMNS), (tables["optics"], OPTICS_COLUMNS)):
        missing = [c for c in columns if c not in table]
        assert not missing, f"{star} lacks {missing}"
        assert np.isfinite(table[list(columns)].to_numpy(dtype=np.float64)).all()
    # The input states none of these three: RELION's neutral values are written.
    assert (tables["particles"][["rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor"]] == [0, 0, 1]).all(axis=None)


@pytest.fixture(scope="module")
def cryodrgn_parsed(project, tmp_path_factory) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rotation matrices, shifts, CTF parameters) as cryoDRGN's parse commands read each output."""
    out = tmp_path_factory.mktemp("cryodrgn")
    calls = []
    for i, star in enumerate(OUTPUTS):
        calls += [["parse_pose_star", star, "-o", str(out / f"pose{i}.pkl")],
                  ["parse_ctf_star", star, "-o", str(out / f"ctf{i}.pkl")]]
    result = subprocess.run([sys.executable, "-c", RUN_CRYODRGN_COMMANDS, json.dumps(calls)], cwd=project,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    parsed = {}
    for i, star in enumerate(OUTPUTS):
        with open(out / f"pose{i}.pkl", "rb") as poses, open(out / f"ctf{i}.pkl", "rb") as ctf:
            rotations, shifts = pickle.load(poses)
            parsed[star] = (rotations, shifts, pickle.load(ctf))
    return parsed


@needs_cryodrgn
@pytest.mark.parametrize("star", OUTPUTS)
def test_cryodrgn_reads_poses_and_every_ctf_value_as_written(project, cryodrgn_parsed, star):
    rotations, shifts, ctf = cryodrgn_parsed[star]
    written = _written(project / star)
    assert np.isfinite(ctf).all() and np.isfinite(rotations).all() and np.isfinite(shifts).all()
    np.testing.assert_allclose(ctf, written[list(CRYODRGN_CTF)].to_numpy(dtype=np.float64), rtol=1e-6)  # float32
    # cryoDRGN's rotation is RELION's Euler matrix A, the one our forward model projects with.
    angles = (written[c].to_numpy() for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"))
    np.testing.assert_allclose(rotations, relion_rotation(*angles), atol=1e-9)
    # Shifts as fractions of the box, same sign as RELION's origin; cryoDRGN divides by a float32 pixel size.
    origin_px = written[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy() / written[["rlnImagePixelSize"]].to_numpy()
    np.testing.assert_allclose(shifts, origin_px / written[["rlnImageSize"]].to_numpy(), rtol=1e-6, atol=1e-12)
    assert np.abs(shifts).max() > 0  # the bundled particles' origins, also drawn for the generated ones


def _reconstruct(folder: Path, star: str) -> np.ndarray:
    """`relion_reconstruct --ctf` of a STAR file, run from the project folder as RELION reads its stacks."""
    out = Path(star).with_suffix(".reconstruction.mrc")
    subprocess.run(["relion_reconstruct", "--i", star, "--o", str(out), "--ctf"], cwd=folder, check=True,
                   capture_output=True)
    return mrcfile.read(folder / out).astype(np.float64)


def _low_pass_correlation(a: np.ndarray, b: np.ndarray, pixel: float, resolution: float) -> float:
    """Pearson correlation of two cubic maps inside the box's inscribed sphere, both cut off at `resolution` Å."""
    size = a.shape[0]
    grid = np.fft.fftfreq(size)
    frequency = np.sqrt(grid[:, None, None] ** 2 + grid[None, :, None] ** 2 + grid[None, None, :] ** 2)
    kept = frequency < pixel / resolution
    centred = np.arange(size) - size // 2
    inside = centred[:, None, None] ** 2 + centred[None, :, None] ** 2 + centred[None, None, :] ** 2 < (size // 2 - 2) ** 2
    a, b = (np.fft.ifftn(np.fft.fftn(v) * kept).real[inside] for v in (a, b))
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _correlation_with_map(folder: Path, star: str, resolution: float) -> float:
    # Generated at the map's own pixel size and box (4.88 Å, 48 px), so the map is compared as it is.
    reference = mrcfile.read(folder / "consensus_map.mrc").astype(np.float64)
    return _low_pass_correlation(_reconstruct(folder, star), reference, 4.88, resolution)


@needs_relion
def test_relion_reconstructs_the_map_from_the_generated_particles(project):
    assert _correlation_with_map(project, "Generated/clean.star", 15.0) > CLEAN_CORRELATION
    assert _correlation_with_map(project, "Generated/particles.star", 20.0) > NOISY_CORRELATION


@needs_relion
def test_the_reconstruction_check_sees_origins_of_the_wrong_sign(project):
    """The same particles with their origins negated: the threshold above must tell them apart."""
    tables = starfile.read(project / "Generated/clean.star", always_dict=True)
    tables["particles"][["rlnOriginXAngst", "rlnOriginYAngst"]] *= -1
    starfile.write(tables, project / "Generated/negated_origins.star", overwrite=True)
    assert _correlation_with_map(project, "Generated/negated_origins.star", 15.0) < CLEAN_CORRELATION
