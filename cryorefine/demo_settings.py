"""The demo's settings and the realism effects of its data: torch-free, so `cryorefine demo --help` reads the defaults without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DATA_KINDS = ("realistic", "stationary")


@dataclass(frozen=True)
class RealismEffects:
    """What separates a real particle from its sim at the refined pose, with literature ranges.

    - Pose error: a rotation by |N(0, σ)| about a random axis, σ = 2° (RELION's reported angular
      accuracy for small or low-resolution particles is a few degrees; 1–5° is typical).
    - Shift error: N(0, σ) per axis, σ = 0.5 px (2.4 Å here; refined translations are good to 1–3 Å).
    - Per-particle B-factor envelope (radiation damage, beam-induced motion): N(75, 40²) Å², at least
      0 (per-particle/per-micrograph B-factors from RELION's CTF refinement and Bayesian polishing
      spread over tens to ~150 Å²).
    - Ice thickness t, relative to the mean: log-normal with σ = 0.2 (ice varies by tens of percent
      across the holes of one grid). Noise std ∝ √t (more scattering material), signal ∝ exp(−0.5·(t−1))
      (inelastic loss grows with thickness at a mean free path of about twice the mean thickness).
    - Contrast (per-particle scale) log-normal σ = 0.15 on top (RELION's per-particle scale
      corrections spread by 10–30%).
    - Not modelled: conformational spread (the one map stands for every particle).
    """

    angle_sigma_deg: float = 2.0
    shift_sigma_px: float = 0.5
    bfactor_mean: float = 75.0
    bfactor_sigma: float = 40.0
    thickness_sigma: float = 0.2
    thickness_signal_loss: float = 0.5
    contrast_sigma: float = 0.15


@dataclass
class DemoConfig:
    out: Path
    particles: int = 1536  # demo "experimental" particles; the last `test_particles` are held out
    test_particles: int = 512
    snr: float = 0.1  # signal variance over noise variance, over the whole box
    steps: int = 800
    data: str = "realistic"
    effects: RealismEffects = field(default_factory=RealismEffects)
    # Also train the white-noise generator and the default without RPSD and without the pixel-histogram
    # term, for the comparison table in docs/results.md (4x the training time).
    ablation: bool = False
    generate: int = 64
    seed: int = 0
    device: str = "cpu"
