"""RELION's Euler matrix in numpy, torch-free: the forward model and the Scipion plugin both use it.

RELION's pose: A = Rz(ψ)·Ry(θ)·Rz(φ) (rlnAngleRot φ, rlnAngleTilt θ, rlnAnglePsi ψ), in degrees.
"""

from __future__ import annotations

import numpy as np


def relion_rotation(rot, tilt, psi) -> np.ndarray:
    """RELION's Euler matrix A (..., 3, 3), float64, from angles in degrees (src/euler.cpp, Euler_angles2matrix)."""
    phi, theta, psi = (np.deg2rad(np.asarray(a, dtype=np.float64)) for a in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = np.cos(phi), np.sin(phi), np.cos(theta), np.sin(theta), np.cos(psi), np.sin(psi)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    rows = [
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)
