"""The forward model against real RELION (`relion_project`, Debian's RELION 3.1.3).

24 particles with varied poses, origins, astigmatism in both orders, phase shifts and B-factors in
two optics groups, for an even and an odd box: every simulated image must correlate with RELION's
own projection at r >= 0.99, with and without CTF.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

from cryorefine.io.mrc import read_stack
from cryorefine.io.star import particle_parameters, read_particle_star
from cryorefine.physics.forward import ForwardModel
from cryorefine.physics.euler import relion_rotation
from cryorefine.synthetic import blob_map
from tests._synthetic import varied_particles, write_dataset

pytestmark = pytest.mark.skipif(shutil.which("relion_project") is None, reason="RELION not installed (apt-get install relion)")

PIXEL_SIZE = 2.0


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


@pytest.mark.parametrize("box", [64, 65])
@pytest.mark.parametrize("ctf", [True, False])
def test_simulation_matches_relion_project(tmp_path, box, ctf):
    volume = blob_map(box, seed=box)
    optics, particles = varied_particles(24, box, PIXEL_SIZE, seed=box)
    images = np.zeros((len(particles), box, box), dtype=np.float32)
    star_path, map_path = write_dataset(tmp_path, volume, PIXEL_SIZE, optics, particles, images)

    command = ["relion_project", "--i", map_path.name, "--ang", star_path.name, "--o", "relion_proj", "--angpix", str(PIXEL_SIZE)]
    if ctf:
        command.append("--ctf")
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True)
    reference = read_stack(tmp_path / "relion_proj.mrcs")

    star = read_particle_star(star_path)
    params = particle_parameters(star)
    model = ForwardModel(volume, PIXEL_SIZE, apply_ctf=ctf)
    simulated = model.simulate(params).numpy()

    correlations = np.array([_pearson(s, r) for s, r in zip(simulated, reference)])
    scale = float((simulated * reference).sum() / (simulated**2).sum())
    print(f"box {box} ctf {ctf}: r min {correlations.min():.5f} median {np.median(correlations):.5f} scale {scale:.4f}")
    assert correlations.min() >= 0.99, correlations
    assert 0.9 < scale < 1.1  # same amplitude convention as RELION (plain voxel sum)


def test_wrong_conventions_are_detected(tmp_path):
    """The agreement test can fail: a flipped shift, a transposed matrix or a negated CTF score far lower."""
    box = 64
    volume = blob_map(box, seed=3)
    optics, particles = varied_particles(12, box, PIXEL_SIZE, seed=3)
    star_path, _ = write_dataset(tmp_path, volume, PIXEL_SIZE, optics, particles, np.zeros((12, box, box), np.float32))
    subprocess.run(["relion_project", "--i", "map.mrc", "--ang", "particles.star", "--o", "p", "--ctf", "--angpix", "2"],
                   cwd=tmp_path, check=True, capture_output=True)
    reference = read_stack(tmp_path / "p.mrcs")
    params = particle_parameters(read_particle_star(star_path))
    model = ForwardModel(volume, PIXEL_SIZE)

    def median_r(images: torch.Tensor) -> float:
        return float(np.median([_pearson(s, r) for s, r in zip(images.numpy(), reference)]))

    assert median_r(model.simulate(params)) > 0.999
    flipped = params.subset(slice(None))
    flipped.origin_x_angst, flipped.origin_y_angst = -params.origin_x_angst, -params.origin_y_angst
    assert median_r(model.simulate(flipped)) < 0.9
    matrices = torch.from_numpy(relion_rotation(params.rot, params.tilt, params.psi))

    def render(pose_matrices: torch.Tensor) -> torch.Tensor:  # the path `ForwardModel.simulate` takes
        spectrum = model.projector.project_rfft(pose_matrices) * model.transfer(params)
        return torch.fft.irfft2(spectrum, s=(box, box))

    assert median_r(render(matrices)) > 0.999  # the rendering path itself is right...
    assert median_r(render(matrices.transpose(-1, -2))) < 0.9  # ...so only the transposed pose fails
    assert median_r(-model.simulate(params)) < -0.99
