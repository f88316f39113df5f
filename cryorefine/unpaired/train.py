"""Train the unpaired translator: CycleGAN (two generators, two PatchGANs, cycle and identity
losses) plus the mask-guided PatchNCE term, the project's RPSD term and pixel-distribution term
on the synthetic -> real direction. The cycle and identity weights default to 0 (see
`UnpairedConfig`): the measured better model is the contrastive one.

Domain A, the generator's input (`UnpairedConfig.input`): `clean`, the clean micrograph, so the
network must invent all of the noise; or `physics`, the coloured baseline (clean + Gaussian noise
with the real spectrum, `methods.MicrographNoise`) drawn afresh for every training micrograph
copy, with the residual head starting at zero: the network starts from the best simple baseline
and corrects it rather than inventing.

Objective for the generators (LSGAN adversarial terms), m the particle mask, L a low-pass:
  L = L_GAN(G_AB) + L_GAN(G_BA) + λ_cyc (‖G_BA(G_AB(a)) − a‖₁ + ‖G_AB(G_BA(b), 0) − b‖₁)
      + λ_id (‖G_AB(b, 0) − b‖₁ + ‖G_BA(a) − a‖₁) + λ_nce PatchNCE(a, G_AB(a))
      + λ_rpsd RPSD-L1(G_AB(a), b) + λ_hist W1(G_AB(a), b) + λ_struct ‖m·(L G_AB(a) − L a)‖₁ / ‖m‖₁
The RPSD and W1 terms compare batch statistics, so they need no pairing; the structure term keeps
the particles' low frequencies where the input has them.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from cryorefine.gan.losses import discriminator_loss, generator_adversarial_loss, histogram_w1, rpsd_l1
from cryorefine.gan.models import Generator, channel_widths
from cryorefine.metrics.micrographs import LOW_PASS_SIGMA_PX
from cryorefine.progress import Progress
from cryorefine.unpaired.config import INPUTS, UnpairedConfig
from cryorefine.normalisation import Normalisation
from cryorefine.unpaired.data import domain_normalisation, random_tiles
from cryorefine.unpaired.diffusion import gaussian_low_pass
from cryorefine.unpaired.losses import patch_nce
from cryorefine.unpaired.methods import MicrographNoise
from cryorefine.unpaired.model import MaskConditionedGenerator, PatchProjector, UnconditionalDiscriminator

log = logging.getLogger(__name__)


@dataclass
class Translator:
    """The trained synthetic -> real direction with the domains' standardisations."""

    generator: MaskConditionedGenerator
    synthetic: Normalisation
    real: Normalisation
    config: UnpairedConfig
    noise: MicrographNoise | None = None

    @property
    def needs_physics(self) -> bool:
        return self.config.input == "physics"

    def translate(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None,
                  physics: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised synthetic tiles (B, 1, H, W) + masks (+ standardised physics tiles) -> real-looking tiles."""
        return self.generator(physics if self.needs_physics else image, mask, generator)


def _networks(config: UnpairedConfig):
    torch.manual_seed(config.seed)
    g_ab, g_ba = MaskConditionedGenerator(config.model), Generator(config.model)
    if config.input == "physics":  # start as the identity: the coloured baseline itself
        torch.nn.init.zeros_(g_ab.head.weight)
        torch.nn.init.zeros_(g_ab.head.bias)
    d_a, d_b = UnconditionalDiscriminator(config.model), UnconditionalDiscriminator(config.model)
    projector = PatchProjector(channel_widths(config.model))
    return g_ab, g_ba, d_a, d_b, projector


def physics_images(cleans: list[np.ndarray], noise: MicrographNoise, dose_per_pixel: float, seed: int,
                   copies: int = 1) -> list[np.ndarray]:
    """Each clean micrograph as `copies` coloured-baseline micrographs, each standardised by itself."""
    return [noise.physics(clean, dose_per_pixel, seed + 1000 * copy + index)
            for copy in range(copies) for index, clean in enumerate(cleans)]


def train_translator(synthetic: list[np.ndarray], masks: list[np.ndarray], real: list[np.ndarray],
                     config: UnpairedConfig, dose_per_pixel: float | None = None) -> tuple[Translator, list[dict]]:
    """Train on standardised random tiles; returns the translator and the loss log rows.

    `dose_per_pixel` (the scenes' counts scale) is needed for the physics input.
    """
    if config.input not in INPUTS:
        raise ValueError(f"input {config.input!r} is not one of {INPUTS}")
    synthetic_scale, real_scale = domain_normalisation(synthetic), domain_normalisation(real)
    real_noise = MicrographNoise.fit(real)
    if config.input == "physics":
        if not dose_per_pixel:
            raise ValueError("the physics input needs the scenes' dose per pixel")
        a_images = physics_images(synthetic, real_noise, dose_per_pixel, config.seed, config.physics_copies)
        masks = masks * config.physics_copies
    else:
        a_images = [synthetic_scale.forward(i) for i in synthetic]
    b_images = [real_scale.forward(i) for i in real]
    rng = np.random.default_rng(config.seed)
    noise = torch.Generator().manual_seed(config.seed)
    g_ab, g_ba, d_a, d_b, projector = _networks(config)
    betas = (config.beta1, 0.999)
    optimise_g = torch.optim.Adam(itertools.chain(g_ab.parameters(), g_ba.parameters(), projector.parameters()),
                                  lr=config.learning_rate, betas=betas)
    optimise_d = torch.optim.Adam(itertools.chain(d_a.parameters(), d_b.parameters()), lr=config.learning_rate,
                                  betas=betas)
    rows, started = [], time.time()
    progress = Progress(config.steps, "translate train (contrastive)")
    for step in range(1, config.steps + 1):
        a, mask = random_tiles(a_images, config.tile, config.batch_size, rng, masks)
        b, _ = random_tiles(b_images, config.tile, config.batch_size, rng)
        no_mask = torch.zeros_like(b)

        fake_b = g_ab(a, mask, noise)
        fake_a = g_ba(b, noise)
        adversarial = generator_adversarial_loss("lsgan", d_b(fake_b)) + generator_adversarial_loss("lsgan", d_a(fake_a))
        zero = torch.zeros(())
        cycle = ((g_ba(fake_b, noise) - a).abs().mean() + (g_ab(fake_a, no_mask, noise) - b).abs().mean()
                 if config.lambda_cycle else zero)
        identity = ((g_ab(b, no_mask, noise) - b).abs().mean() + (g_ba(a, noise) - a).abs().mean()
                    if config.lambda_identity else zero)
        nce = patch_nce(g_ab.encode(a, mask), g_ab.encode(fake_b, mask), projector, mask, config.nce_patches, noise)
        spectrum = rpsd_l1(fake_b, b)
        histogram = histogram_w1(fake_b, b)
        structure = structure_loss(fake_b, a, mask) if config.lambda_structure else zero
        total = (adversarial + config.lambda_cycle * cycle + config.lambda_identity * identity + config.lambda_nce * nce
                 + config.lambda_rpsd * spectrum + config.lambda_histogram * histogram
                 + config.lambda_structure * structure)
        optimise_g.zero_grad()
        total.backward()
        optimise_g.step()

        d_loss = (discriminator_loss("lsgan", d_b(b), d_b(fake_b.detach()))
                  + discriminator_loss("lsgan", d_a(a), d_a(fake_a.detach())))
        optimise_d.zero_grad()
        d_loss.backward()
        optimise_d.step()

        if step % config.log_every == 0 or step == config.steps:
            row = {"step": step, "adversarial": adversarial.item(), "cycle": cycle.item(), "identity": identity.item(),
                   "nce": nce.item(), "rpsd": spectrum.item(), "histogram": histogram.item(), "structure": structure.item(),
                   "discriminator": d_loss.item(), "seconds": round(time.time() - started, 1)}
            rows.append(row)
            log.debug("step %d: %s", step, ", ".join(f"{k} {v:.3g}" for k, v in row.items() if k != "step"))
            progress.set_postfix(adversarial=f"{row['adversarial']:.3g}", rpsd=f"{row['rpsd']:.3g}",
                                 structure=f"{row['structure']:.3g}")
        progress.update()
    progress.close()
    return Translator(g_ab.eval(), synthetic_scale, real_scale, config, real_noise), rows


def structure_loss(output: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |low-pass(output) − low-pass(source)| inside the masks (0 for a batch without particles)."""
    inside = (mask > 0).to(output.dtype)
    difference = (gaussian_low_pass(output, LOW_PASS_SIGMA_PX) - gaussian_low_pass(source, LOW_PASS_SIGMA_PX)).abs()
    return (difference * inside).sum() / inside.sum().clamp_min(1.0)
