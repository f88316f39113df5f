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


def random_poses(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform random orientations: rot, psi uniform, cos(tilt) uniform in [−1, 1]."""
    return (rng.uniform(0, 360, n), np.degrees(np.arccos(rng.uniform(-1, 1, n))), rng.uniform(0, 360, n))


def relion_rotation_matrices(rot: torch.Tensor, tilt: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """RELION's Euler matrix A (B, 3, 3) from angles in degrees (src/euler.cpp, Euler_angles2matrix)."""
    phi, theta, psi = (torch.deg2rad(a.double()) for a in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = torch.cos(phi), torch.sin(phi), torch.cos(theta), torch.sin(theta), torch.cos(psi), torch.sin(psi)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    rows = [
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


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
        # Real and imaginary parts as two channels, laid out once for grid_sample.
        self.dft_channels = torch.view_as_real(dft).permute(3, 0, 1, 2).contiguous()[None]
        # The output rfft grid (fftfreq order, cycles/pixel) as xyz points, inside Nyquist only.
        ky = torch.fft.fftfreq(self.grid_size, device=volume.device)
        kx = torch.fft.rfftfreq(self.grid_size, device=volume.device)
        grid_y, grid_x = torch.meshgrid(ky, kx, indexing="ij")
        self.inside = grid_x**2 + grid_y**2 <= 0.25
        self.points = torch.stack([grid_x[self.inside], grid_y[self.inside], torch.zeros_like(grid_x[self.inside])], -1)

    def project_rfft(self, relion_matrices: torch.Tensor) -> torch.Tensor:
        """rfft (fftfreq order, centre pixel N//2 at the origin) of the projections, (B, N, N//2+1)."""
        rotated = torch.einsum("bji,pj->bpi", relion_matrices.to(torch.float32), self.points)  # Aᵀ·k
        # The rfft stores x >= 0 only: sample F(-k) and use F(k) = conj F(-k) where x < 0.
        sign = torch.where(rotated[..., 0] < 0, -1.0, 1.0)
        samples = self._sample(rotated * sign[..., None], imaginary_sign=sign)
        grid = self.grid_size
        spectrum = torch.zeros((len(relion_matrices), grid, grid // 2 + 1), dtype=samples.dtype, device=samples.device)
        spectrum[:, self.inside] = samples
        spectrum[:, 0, 0] += self.edge_value * self.size * grid * grid  # the edge mean, summed along z
        if grid == self.size:
            return spectrum
        images = torch.fft.fftshift(torch.fft.irfft2(spectrum, s=(grid, grid)), dim=(-2, -1))
        images = images[..., : self.size, : self.size]
        return torch.fft.rfft2(torch.fft.ifftshift(images, dim=(-2, -1)))

    def _sample(self, frequencies_xyz: torch.Tensor, imaginary_sign: torch.Tensor) -> torch.Tensor:
        """Trilinear samples of the padded DFT at frequencies (cycles/pixel, x >= 0), complex (B, P).

        `imaginary_sign` (B, P) of -1 conjugates a sample.
        """
        size = self.padded_size
        _, _, depth, height, width = self.dft_channels.shape
        # grid_sample wants xyz in [-1, 1] over the array (align_corners: -1 and 1 are the end voxels).
        index_x = frequencies_xyz[..., 0] * size
        index_y = frequencies_xyz[..., 1] * size + size // 2
        index_z = frequencies_xyz[..., 2] * size + size // 2
        grid = torch.stack([index_x / (width - 1), index_y / (height - 1), index_z / (depth - 1)], dim=-1) * 2 - 1
        values = _trilinear(self.dft_channels, grid)
        return torch.complex(values[0], values[1] * imaginary_sign)

    def project(self, relion_matrices: torch.Tensor) -> torch.Tensor:
        """Projections (B, N, N), the plain voxel sum along the beam, for RELION matrices A (B, 3, 3)."""
        spectrum = self.project_rfft(relion_matrices)
        return torch.fft.fftshift(torch.fft.irfft2(spectrum, s=(self.size, self.size)), dim=(-2, -1))


def _trilinear(channels: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """grid_sample of a (1, C, D, H, W) volume at (B, P, 3) points in [-1, 1]: (C, B, P).

    On the CPU, grid_sample parallelises over its batch dimension only, so the poses are split into
    one chunk per thread against the same (expanded, not copied) volume; the samples are identical.
    """
    batch, points = grid.shape[:2]
    chunks = min(torch.get_num_threads(), batch) if channels.device.type == "cpu" else 1
    per_chunk = -(-batch // chunks)
    padding = per_chunk * chunks - batch
    if padding:
        grid = torch.cat([grid, grid.new_zeros(padding, points, 3)])
    values = F.grid_sample(channels.expand(chunks, -1, -1, -1, -1), grid.reshape(chunks, 1, per_chunk, points, 3),
                           mode="bilinear", padding_mode="zeros", align_corners=True)  # trilinear in 3D
    return values[:, :, 0].transpose(0, 1).reshape(channels.shape[1], chunks * per_chunk, points)[:, :batch]
