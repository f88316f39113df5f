"""The translators' settings, names and saved description: torch-free, so the command line and the adapters
read the defaults without loading torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryorefine import __version__
from cryorefine.errors import InputError
from cryorefine.gan.config import RESUMABLE_FIELDS, ModelConfig
from cryorefine.normalisation import Normalisation

# What `translate train --method` builds, what `apply --baseline` offers and what a model may be fed.
METHODS = ("contrastive", "diffusion")
NOISE_BASELINES = ("gaussian", "poisson")
BASELINES = (*NOISE_BASELINES, "coloured", "real-background")
INPUTS = ("physics", "clean")
# The saved-model kind of each method (`format` in its config; see cryorefine.training).
FORMATS = {"contrastive": "cryorefine-contrastive", "diffusion": "cryorefine-diffusion"}
CONFIG_VERSION = 1


@dataclass(frozen=True)
class UnpairedConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 1000
    batch_size: int = 8
    tile: int = 64
    learning_rate: float = 2e-4
    beta1: float = 0.5
    # Off by default: with CycleGAN's 10 and 5 the synthetic -> real generator collapsed to the
    # identity on the micrograph experiment (docs/scene.md: RPSD L1 0.55, AUC 1.0 after 450 and 700
    # steps) because the A -> B -> A cycle rewards adding no noise that G_BA would have to remove.
    # The contrastive term keeps the content instead (as in CUT); 10 / 5 restore the CycleGAN.
    lambda_cycle: float = 0.0
    lambda_identity: float = 0.0
    # 5 rather than CUT's 1: on the micrograph experiment (docs/scene.md) it kept the particles far
    # better (mask preservation 0.80 vs 0.59) at the same realism (RPSD L1 0.047 vs 0.046, classifier
    # AUC 0.56 vs 0.60).
    lambda_nce: float = 5.0
    lambda_rpsd: float = 10.0
    lambda_histogram: float = 10.0
    # In-mask low-pass L1 between output and input (see the module docstring); meant for the
    # physics input, whose low-pass is already on the real scale. 10 rather than 0: on the micrograph
    # experiment (docs/scene.md, as reproduced) it kept the particles (mask preservation 0.899 vs 0.630,
    # the untouched coloured baseline 0.905) at a realism still past that baseline's (RPSD L1 0.121
    # vs 0.155, classifier AUC 0.57 vs 0.83; without it 0.046 and 0.53).
    lambda_structure: float = 10.0
    nce_patches: int = 64
    input: str = "physics"
    # Coloured-baseline copies of each training micrograph (physics input), each with fresh noise.
    physics_copies: int = 4
    log_every: int = 50
    checkpoint_every: int = 200  # steps between the checkpoints that --resume continues from
    seed: int = 0


@dataclass(frozen=True)
class DiffusionConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 1500
    batch_size: int = 16
    tile: int = 64
    # 1e-3 rather than the GAN's 2e-4: on smooth test textures the denoising error fell from 1.0 to
    # 0.21 in 150 steps with 1e-3 and only to 0.91 with 2e-4 (CPU budgets are a few thousand steps).
    learning_rate: float = 1e-3
    # Low-pass that carries the structure (particle positions, shapes, ice gradient) into the
    # condition; at 4 Å/px, 2 px keeps a 100 Å particle's outline and leaves the noise to the model.
    condition_sigma: float = 2.0
    timesteps: int = 1000
    sampling_steps: int = 16
    # Weight of the in-mask low-frequency guidance (0: condition only, 1: exact low-pass in masks).
    guidance: float = 1.0
    # Fraction of the T noise levels sampling starts from: 1 is pure noise; below 1 it starts from
    # the physics image noised to that level (partial diffusion).
    start_level: float = 1.0
    # Exponential moving average of the weights used for sampling (standard for DDPMs).
    ema_decay: float = 0.995
    log_every: int = 50
    checkpoint_every: int = 200
    seed: int = 0


def translator_description(method: str, settings: UnpairedConfig | DiffusionConfig, synthetic: Normalisation,
                           real: Normalisation, noise_power: tuple[float, ...] | None, **extra) -> dict:
    """A translator's saved config: its kind, its settings, both domains' standardisations and the
    measured real spectrum (+ the method's own values in `extra`)."""
    return {"format": FORMATS[method], "config_version": CONFIG_VERSION, "cryorefine_version": __version__,
            "method": method, "settings": asdict(settings), "synthetic": asdict(synthetic), "real": asdict(real),
            "noise_power": None if noise_power is None else list(noise_power), **extra}


def check_resumable(saved: dict, wanted: dict, path: Path) -> None:
    """Refuse to resume a translator whose settings or training micrographs differ from `wanted`'s
    (both `translator_description`s); the loop's own settings (steps, log and checkpoint intervals) may change."""
    old, new = saved.get("settings", {}), wanted["settings"]
    changed = [k for k in new if k not in RESUMABLE_FIELDS and old.get(k) != new[k]]
    if changed:
        raise InputError(path, "training settings differ from the checkpoint's: "
                         + ", ".join(f"{k} {old.get(k)} -> {new[k]}" for k in changed))
    if any(saved.get(domain) != wanted[domain] for domain in ("synthetic", "real")):
        raise InputError(path, "the training micrographs differ from the checkpoint's (their standardisation "
                         "changed): resume with the same --scenes and --real")
