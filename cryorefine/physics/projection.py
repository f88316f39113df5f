"""Fourier-slice projection in RELION's geometry, with torch-fourier-slice's volume preparation.

RELION's pose: A = Rz(ψ)·Ry(θ)·Rz(φ) (rlnAngleRot φ, rlnAngleTilt θ, rlnAnglePsi ψ), and the
projection's 2D transform at (kx, ky) is the map's 3D transform at Aᵀ·(kx, ky, 0).

The map is prepared once as torch-fourier-slice does (edge mean removed, padded 2x, divided by
sinc² for trilinear interpolation, DFT). Slices are then sampled, as RELION's projector does, only at
the N×(N//2+1) frequencies of the output image and only inside the Nyquist circle, so one small
inverse FFT per image suffices (`project_3d_to_2d` samples a 2N grid and recomputes the map's DFT on
every call, about 5x slower here).

Odd boxes: RELION's projection of an odd N map has the map centre (voxel N//2) at image pixel
(N+1)//2, one pixel off the even-box rule (measured against `relion_project` 3.1.3), and
torch-fourier-slice's odd grids are distorted. Both are met by projecting an even N+1 box with one
zero plane in front of each axis and dropping the last row and column.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch_fourier_slice.volume_utils import compute_cube_face_averages, separable_sinc2_correction


# Poses sampled at once: keeps the eight-corner gather (64 bytes a point) in the cache, and the
# intermediates below glibc's mmap threshold so they are reused instead of page-faulted each batch.
SAMPLE_CHUNK = 16


def random_poses(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform random orientations: rot, psi uniform, cos(tilt) uniform in [−1, 1]."""
    return (rng.uniform(0, 360, n), np.degrees(np.arccos(rng.uniform(-1, 1, n))), rng.uniform(0, 360, n))


class FourierProjector:
    """Projects one cubic map (z, y, x) at many poses; the map's centre is voxel N//2."""

    def __init__(self, volume: torch.Tensor, pad_factor: float = 2.0):
        size = volume.shape[-1]
        if volume.shape != (size, size, size):
            raise ValueError(f"volume must be cubic, got {tuple(volume.shape)}")
        self.size = size
        self.edge_value = compute_cube_face_averages(volume, n=4)
        volume = volume - self.edge_value  # padding then continues smoothly from zero
        if size % 2:
            volume = F.pad(volume, pad=[1, 0] * 3)
        self.grid_size = volume.shape[-1]  # even: N, or N+1 for odd N
        pad = int((self.grid_size * (pad_factor - 1.0)) // 2)
        padded = F.pad(volume, pad=[pad] * 6)
        self.padded_size = padded.shape[-1]
        padded = padded / separable_sinc2_correction(tuple(padded.shape), device=volume.device)
        dft = torch.fft.rfftn(torch.fft.ifftshift(padded, dim=(-3, -2, -1)), dim=(-3, -2, -1))
        dft = torch.fft.fftshift(dft, dim=(-3, -2))
        # One zero voxel on every side: all eight corners of every sample are then inside the array
        # (a corner beyond the transform reads zero, as grid_sample's zero padding did).
        bordered = torch.view_as_complex(F.pad(torch.view_as_real(dft), (0, 0, 1, 1, 1, 1, 1, 1)).contiguous())
        self.dft_flat = bordered.reshape(-1)
        depth, height, width = bordered.shape
        # Offsets of a voxel's eight trilinear corners in dft_flat, ordered (z, y, x) each 0 then 1.
        steps = torch.tensor([height * width, width, 1], device=volume.device)
        self.corner_offsets = (torch.cartesian_prod(*[torch.arange(2, device=volume.device)] * 3) * steps).sum(1)
        self.voxel_steps = steps.flip(0)[:, None, None]  # x, y, z
        # The output rfft grid (fftfreq order, cycles/pixel) as xyz points, inside Nyquist only.
        ky = torch.fft.fftfreq(self.grid_size, device=volume.device)
        kx = torch.fft.rfftfreq(self.grid_size, device=volume.device)
        grid_y, grid_x = torch.meshgrid(ky, kx, indexing="ij")
        inside = grid_x**2 + grid_y**2 <= 0.25
        self.inside_index = torch.flatten(inside).nonzero()[:, 0]
        self.points = torch.stack([grid_x[inside], grid_y[inside], torch.zeros_like(grid_x[inside])])  # (3, P)

    def project_rfft(self, relion_matrices: torch.Tensor) -> torch.Tensor:
        """rfft (fftfreq order, centre pixel N//2 at the origin) of the projections, (B, N, N//2+1)."""
        # Aᵀ·k for every output frequency, in voxels of the padded transform: (3, B, P).
        voxels = torch.einsum("bji,jp->ibp", relion_matrices.to(torch.float32) * self.padded_size, self.points)
        samples = torch.cat([self._sample(chunk) for chunk in voxels.split(SAMPLE_CHUNK, dim=1)])
        grid = self.grid_size
        spectrum = torch.zeros((len(relion_matrices), grid * (grid // 2 + 1)), dtype=samples.dtype, device=samples.device)
        spectrum.index_copy_(1, self.inside_index, samples)
        spectrum = spectrum.view(-1, grid, grid // 2 + 1)
        spectrum[:, 0, 0] += self.edge_value * self.size * grid * grid  # the edge mean, summed along z
        if grid == self.size:
            return spectrum
        images = torch.fft.fftshift(torch.fft.irfft2(spectrum, s=(grid, grid)), dim=(-2, -1))
        images = images[..., : self.size, : self.size]
        return torch.fft.rfft2(torch.fft.ifftshift(images, dim=(-2, -1)))

    def _sample(self, voxels: torch.Tensor) -> torch.Tensor:
        """Trilinear samples of the padded DFT at (x, y, z) offsets in voxels from its origin, complex (B, P).

        The rfft stores x >= 0 only: where x < 0 it samples F(-k) and uses F(k) = conj F(-k). One
        gather of all eight corners and three lerps: grid_sample's 3D CPU kernel, which this
        replaces, took twice as long for the same numbers.
        """
        conjugate = voxels[0] < 0
        voxels = torch.where(conjugate, -voxels, voxels)
        voxels[0] += 1.0  # the zero border in front of x = 0
        voxels[1:] += self.padded_size // 2 + 1  # the centred y and z axes, after the border
        corner = voxels.floor()
        fx, fy, fz = voxels.sub_(corner)
        index = (corner.to(torch.int64) * self.voxel_steps).sum(0)  # int64: a 256 px map's exceeds float32's 2^24
        batch, points = index.shape
        values = self.dft_flat.index_select(0, (index[..., None] + self.corner_offsets).view(-1))
        values = values.view(batch, points, 2, 2, 2)  # z, y, x
        along_x = values[..., 0] + fx[..., None, None] * (values[..., 1] - values[..., 0])
        along_y = along_x[..., 0] + fy[..., None] * (along_x[..., 1] - along_x[..., 0])
        samples = along_y[..., 0] + fz * (along_y[..., 1] - along_y[..., 0])
        return torch.where(conjugate, samples.conj(), samples)

    def project(self, relion_matrices: torch.Tensor) -> torch.Tensor:
        """Projections (B, N, N), the plain voxel sum along the beam, for RELION matrices A (B, 3, 3)."""
        spectrum = self.project_rfft(relion_matrices)
        return torch.fft.fftshift(torch.fft.irfft2(spectrum, s=(self.size, self.size)), dim=(-2, -1))

