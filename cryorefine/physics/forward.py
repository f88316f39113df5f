"""The forward model: a particle image as RELION predicts it from the map, pose, origin and CTF.

image = IFT[ CTF · e^{-2πi k·(-origin)} · FT[ P_A(map) ] ], with P_A RELION's projection, the origin
(rlnOriginX/YAngst) moving the particle to -origin from the box centre, and the CTF of
`cryorefine.physics.ctf`. Shift and CTF share one Fourier transform.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from cryorefine.io.star import ParticleParameters
from cryorefine.physics.ctf import relion_ctf_rfft
from cryorefine.physics.imaging import centring_shift, fourier_resize, translation_phase, window
from cryorefine.physics.euler import relion_rotation
from cryorefine.physics.projection import FourierProjector

log = logging.getLogger(__name__)


def prepare_map(volume: np.ndarray, voxel_size: float, pixel_size: float, box: int) -> np.ndarray:
    """Resample a cubic map to the particles' pixel size (Fourier crop/pad) and window it to their box."""
    size = volume.shape[-1]
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    resampled_size = int(round(size * voxel_size / pixel_size))
    if resampled_size != size:
        log.info("resampling the map from %.4f to %.4f Å/px (%d -> %d voxels)", voxel_size, pixel_size, size, resampled_size)
        tensor = _fourier_resize_3d(tensor, resampled_size)
    if resampled_size != box:
        tensor = _window_3d(tensor, box)
    return tensor.numpy()


def _fourier_resize_3d(volume: torch.Tensor, new_size: int) -> torch.Tensor:
    size = volume.shape[-1]
    full = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(volume)))
    out = torch.zeros((new_size,) * 3, dtype=full.dtype)
    n = min(size, new_size)
    src, dst = size // 2 - n // 2, new_size // 2 - n // 2
    out[dst : dst + n, dst : dst + n, dst : dst + n] = full[src : src + n, src : src + n, src : src + n]
    # Keep voxel values (densities) rather than sums: a projection is then a sum of densities.
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(out)).real) * (new_size / size) ** 3


def _window_3d(volume: torch.Tensor, new_size: int) -> torch.Tensor:
    flat = window(volume, new_size)  # crops/pads y and x
    size = volume.shape[0]
    out = torch.zeros((new_size,) * 3, dtype=volume.dtype)
    n = min(size, new_size)
    src, dst = size // 2 - n // 2, new_size // 2 - n // 2
    out[dst : dst + n] = flat[src : src + n]
    return out


class ForwardModel:
    """Simulates clean particle images at given poses and CTFs, one map (or two half maps).

    `volume` must already be at `pixel_size` and `box` (see `prepare_map`). `half_volumes`, when
    given, are used per particle by rlnRandomSubset (1 or 2).
    """

    def __init__(
        self,
        volume: np.ndarray,
        pixel_size: float,
        device: str | torch.device = "cpu",
        apply_ctf: bool = True,
        extra_bfactor: float = 0.0,
        half_volumes: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.device = torch.device(device)
        self.box = int(volume.shape[-1])
        self.pixel_size = float(pixel_size)
        self.apply_ctf = apply_ctf
        self.extra_bfactor = float(extra_bfactor)
        to_tensor = lambda v: torch.as_tensor(np.ascontiguousarray(v, dtype=np.float32), device=self.device)  # noqa: E731
        self.projector = FourierProjector(to_tensor(volume))
        self.half_projectors = None
        if half_volumes is not None:
            self.half_projectors = tuple(FourierProjector(to_tensor(v)) for v in half_volumes)

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float32), device=self.device)

    def project_rfft(self, params: ParticleParameters) -> torch.Tensor:
        """Projections' rfft (B, box, box//2+1), from the half map of each particle's subset if given."""
        angles = (np.asarray(a, dtype=np.float32) for a in (params.rot, params.tilt, params.psi))
        matrices = torch.as_tensor(relion_rotation(*angles), device=self.device)
        if self.half_projectors is None:
            return self.projector.project_rfft(matrices)
        spectra = torch.empty((len(params.rot), self.box, self.box // 2 + 1), dtype=torch.complex64, device=self.device)
        subsets = np.asarray(params.random_subset)
        for half, projector in ((1, self.half_projectors[0]), (2, self.half_projectors[1]), (None, self.projector)):
            rows = np.flatnonzero(subsets == half) if half else np.flatnonzero((subsets != 1) & (subsets != 2))
            if len(rows):
                spectra[torch.as_tensor(rows, device=self.device)] = projector.project_rfft(matrices[rows])
        return spectra

    def transfer(self, params: ParticleParameters) -> torch.Tensor:
        """Origin shift, CTF and the move of the centre from pixel 0 to N//2 as one rfft factor (B, N, N//2+1)."""
        origin_px_x = self._tensor(params.origin_x_angst) / self.pixel_size
        origin_px_y = self._tensor(params.origin_y_angst) / self.pixel_size
        centre = centring_shift(self.box)  # includes the final fftshift, see `simulate`
        factor = translation_phase(centre - origin_px_x, centre - origin_px_y, self.box)
        if self.apply_ctf:
            ctf = relion_ctf_rfft(
                defocus_u=self._tensor(params.defocus_u),
                defocus_v=self._tensor(params.defocus_v),
                defocus_angle=self._tensor(params.defocus_angle),
                voltage_kv=self._tensor(params.voltage),
                cs_mm=self._tensor(params.cs),
                amplitude_contrast=self._tensor(params.amplitude_contrast),
                phase_shift_deg=self._tensor(params.phase_shift),
                bfactor=self._tensor(params.bfactor + self.extra_bfactor),
                scale=self._tensor(params.ctf_scale),
                pixel_size=self.pixel_size,
                box=self.box,
            )
            factor = factor * ctf
        return factor

    def simulate(self, params: ParticleParameters) -> torch.Tensor:
        """Clean images (B, box, box) as they would appear in the particle stack."""
        spectrum = self.project_rfft(params) * self.transfer(params)
        return torch.fft.irfft2(spectrum, s=(self.box, self.box))  # already centred by the transfer's phase


def rebox(images: torch.Tensor, target_box: int | None, resized_box: int | None) -> torch.Tensor:
    """Fourier-resize to `resized_box` (new pixel size), then window to `target_box`: one rule for sim and raw."""
    if resized_box is not None:
        images = fourier_resize(images, resized_box)
    if target_box is not None:
        images = window(images, target_box)
    return images
