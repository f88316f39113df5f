"""The accepted range of each physical quantity, one table for the command line and the STAR reader.

Outside these a CTF is NaN or meaningless (a negative voltage, an amplitude contrast of 1 or more)
or the value is far outside any microscope (a typo, a unit slip). Torch-free: the option checks
read it when the command line is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    high_open: bool = False  # the highest value itself is outside


VOLTAGE_KV = Range(1.0, 3000.0)
SPHERICAL_ABERRATION_MM = Range(-100.0, 100.0)
AMPLITUDE_CONTRAST = Range(0.0, 1.0, high_open=True)
PIXEL_SIZE_A = Range(1e-3, 1e3)
CTF_SCALE = Range(0.0, 1e3)
BFACTOR_A2 = Range(-1e4, 1e5)
