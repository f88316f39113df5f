"""Typed settings for the GAN, saved with every model and checked when it is loaded.

Defaults are demo-scale: a few hundred steps of batch 16 at 64 px train in a minute or two
on one or two CPU cores, and the same settings scale to a GPU by raising `steps`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

CONFIG_VERSION = 1
MODEL_FORMAT = "cryorefine-gan"  # `format` in a saved GAN's config (see cryorefine.training)
NOISE_PRIORS = ("coloured", "white")
GAN_MODES = ("lsgan", "hinge")  # LossConfig.gan_mode
# The noise baselines (cryorefine.noise) and what `apply`/`generate --noise` offer; kept here, in a
# torch-free module, so the Scipion and RELION adapters read the same lists.
BASELINES = ("gaussian", "poisson", "gaussian+poisson", "coloured", "residual")
NOISE_CHOICES = ("gan", *BASELINES)
# What `apply` uses by default: the trained model, the point of training one.
APPLY_NOISE = "gan"
# What `generate` gives new particles by default: on the realistic demo data the coloured baseline ties
# the residual transplant and is ahead of the trained model on RPSD L1 and classifier AUC
# (docs/results.md), and unlike the transplant it never reuses a finite bank or carries another
# particle's model error.
GENERATE_NOISE = "coloured"


@dataclass(frozen=True)
class ModelConfig:
    # 16 channels at full resolution: enough to shape a noise spectrum and pixel distribution,
    # small enough for CPU training; the width doubles at each level up to 4x.
    base_channels: int = 16
    # 3 levels take a 64 px box down to 8 px, so the receptive field covers the particle.
    depth: int = 3
    # Fresh noise maps fed with the input: the source of different noise for the same sim.
    noise_channels: int = 2
    # Initial weight of the per-channel noise added after every decoder block; non-zero so the
    # noise path carries gradient from step one instead of being learned away (pix2pix collapse).
    noise_init_scale: float = 0.5
    # The generator's noise source. "coloured": the coloured baseline fitted on the training pairs
    # (measured noise power spectrum and per-particle noise level) is added to the sim and the
    # network, whose output layer starts at zero, learns only the correction on top, so at step 0
    # the model is that baseline. "white": the network makes all the noise from white noise maps.
    noise_prior: str = "coloured"
    # PatchGAN width; 3 stride-2 layers give 70x70-like patches on a 256 px box, ~22 px here.
    discriminator_channels: int = 32
    discriminator_layers: int = 3


@dataclass(frozen=True)
class LossConfig:
    # Least squares GAN: smooth gradients that keep pushing the pixel distribution (skew,
    # kurtosis) towards raw's; "hinge" is the alternative.
    gan_mode: str = "lsgan"
    lambda_gan: float = 1.0
    # Modest L1: with pix2pix's 100 the generator drifts to a denoised mean against noisy targets;
    # on the synthetic pairs 1 gave a better spectrum and pixel distribution than 5.
    lambda_l1: float = 1.0
    # The spectrum term that makes the noise power match raw's ring by ring.
    lambda_rpsd: float = 10.0
    # Pixel-value distribution term (Wasserstein-1). With the physics prior it is needed: the L1 and
    # adversarial terms otherwise bend the prior's Gaussian noise into a peaked, heavy-tailed one
    # (excess kurtosis 1.4 against raw's 0.18, pixel W1 0.069 against 0.008 with the term, on the
    # realistic demo data; docs/results.md).
    lambda_histogram: float = 10.0
    # Rings from DC to Nyquist; None = box // 2 (one ring per Fourier pixel).
    rpsd_bins: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 800
    batch_size: int = 16
    # Adam with pix2pix's learning rate and beta1 = 0.5, which damps the GAN's oscillation.
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    # Learning rate of the physics-prior generator's few physical parameters (ring gains, Hermite
    # terms) as a multiple of lr_generator.
    physical_lr_factor: float = 10.0
    beta1: float = 0.5
    beta2: float = 0.999
    # Share of the pairs held out for validation, and its cap (evaluation time stays bounded).
    validation_fraction: float = 0.1
    max_validation: int = 256
    # Images in the fixed visualisation batch (plotted and scored at every log step).
    fixed_batch_size: int = 8
    log_every: int = 50
    checkpoint_every: int = 200
    seed: int = 0
    # Mixed precision on GPU: bf16 autocast where supported, else fp16 with a gradient scaler.
    amp: bool = True


# Settings that may change when a run is resumed (they do not alter what a step computes).
RESUMABLE_FIELDS = ("steps", "log_every", "checkpoint_every")


def to_dict(config: Any) -> dict:
    return asdict(config)


def from_dict(cls: type, values: dict) -> Any:
    """Rebuild a config, refusing unknown keys (a model from a newer or different version)."""
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings {sorted(unknown)}")
    return cls(**values)
