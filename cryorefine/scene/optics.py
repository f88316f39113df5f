"""Imaging settings of a synthetic micrograph: torch-free, so the command line reads them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

MTF_KINDS = ("none", "sinc")


@dataclass(frozen=True)
class Optics:
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    bfactor: float = 0.0


@dataclass(frozen=True)
class Defocus:
    u_a: float
    v_a: float
    angle_deg: float
