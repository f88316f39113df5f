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
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from cryorefine.gan.losses import discriminator_loss, generator_adversarial_loss, histogram_w1, rpsd_l1
from cryorefine.gan.models import Generator, channel_widths
from cryorefine.metrics.micrographs import LOW_PASS_SIGMA_PX
from cryorefine.normalisation import Normalisation
from cryorefine.training import MixedPrecision, TrainingLoop
from cryorefine.unpaired.config import FORMATS, INPUTS, UnpairedConfig, translator_description
from cryorefine.unpaired.data import domain_normalisation, random_tiles
from cryorefine.unpaired.diffusion import gaussian_low_pass
from cryorefine.unpaired.losses import patch_nce
from cryorefine.unpaired.methods import MicrographNoise
from cryorefine.unpaired.model import MaskConditionedGenerator, PatchProjector, UnconditionalDiscriminator
from cryorefine.unpaired.task import TranslatorTask

log = logging.getLogger(__name__)


@dataclass
class Translator:
    """The trained synthetic -> real direction with the domains' standardisations."""

    generator: MaskConditionedGenerator
    synthetic: Normalisation
    real: Normalisation
    config: UnpairedConfig
    noise: MicrographNoise | None = None

    NETWORK = "generator"  # the saved state entry that holds `generator`

    @property
    def needs_physics(self) -> bool:
        return self.config.input == "physics"

    def translate(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None,
                  physics: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised synthetic tiles (B, 1, H, W) + masks (+ standardised physics tiles) -> real-looking tiles."""
        return self.generator(physics if self.needs_physics else image, mask, generator)

    def to(self, device: torch.device) -> Translator:
        """This translator with its network on `device`."""
        self.generator.to(device)
        return self

    def description(self) -> dict:
        return translator_description("contrastive", self.config, self.synthetic, self.real,
                                      None if self.noise is None else self.noise.power)


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


class ContrastiveTask(TranslatorTask):
    """Both generators, both PatchGANs and the PatchNCE projector on standardised random tiles.

    Two streams seeded by `config.seed`: `tiles` draws every batch's tiles, `noise` every noise map
    and PatchNCE sample; both are saved with the checkpoint. The networks are built on the CPU (the
    same first weights on any device) and trained on `device`, where `noise` draws too.
    """

    model_format = FORMATS["contrastive"]
    log_columns = ("step", "adversarial", "cycle", "identity", "nce", "rpsd", "histogram", "structure",
                   "discriminator", "seconds")
    progress_label = "translate train (contrastive)"

    def __init__(self, synthetic: list[np.ndarray], masks: list[np.ndarray], real: list[np.ndarray],
                 config: UnpairedConfig, dose_per_pixel: float | None = None,
                 device: torch.device = torch.device("cpu")):
        if config.input not in INPUTS:
            raise ValueError(f"input {config.input!r} is not one of {INPUTS}")
        self.config = config
        self.synthetic_scale, self.real_scale = domain_normalisation(synthetic), domain_normalisation(real)
        self.real_noise = MicrographNoise.fit(real)
        if config.input == "physics":
            if not dose_per_pixel:
                raise ValueError("the physics input needs the scenes' dose per pixel")
            self.a_images = physics_images(synthetic, self.real_noise, dose_per_pixel, config.seed, config.physics_copies)
            self.masks = masks * config.physics_copies
        else:
            self.a_images = [self.synthetic_scale.forward(i) for i in synthetic]
            self.masks = masks
        self.b_images = [self.real_scale.forward(i) for i in real]
        self.device = device
        self.tiles = np.random.default_rng(config.seed)
        self.noise = torch.Generator(device=device).manual_seed(config.seed)
        self.g_ab, self.g_ba, self.d_a, self.d_b, self.projector = (network.to(device) for network in _networks(config))
        betas = (config.beta1, 0.999)
        self.optimise_g = torch.optim.Adam(itertools.chain(self.g_ab.parameters(), self.g_ba.parameters(),
                                                           self.projector.parameters()),
                                           lr=config.learning_rate, betas=betas)
        self.optimise_d = torch.optim.Adam(itertools.chain(self.d_a.parameters(), self.d_b.parameters()),
                                           lr=config.learning_rate, betas=betas)
        self.networks = {"generator": self.g_ab, "generator_ba": self.g_ba, "discriminator_a": self.d_a,
                         "discriminator_b": self.d_b, "projector": self.projector}
        self.optimisers = {"generator": self.optimise_g, "discriminator": self.optimise_d}
        self.started = time.time()

    def translator(self) -> Translator:
        return Translator(self.g_ab, self.synthetic_scale, self.real_scale, self.config, self.real_noise)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        self.started = time.time()
        config = self.config
        while True:
            a, mask = random_tiles(self.a_images, config.tile, config.batch_size, self.tiles, self.masks)
            b, _ = random_tiles(self.b_images, config.tile, config.batch_size, self.tiles)
            yield a.to(self.device), mask.to(self.device), b.to(self.device)

    def update(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], step: int,
               precision: MixedPrecision) -> dict[str, float]:
        """The generators' step on the objective of the module docstring, then the discriminators'."""
        a, mask, b = batch
        config, noise = self.config, self.noise
        g_ab, g_ba, d_a, d_b = self.g_ab, self.g_ba, self.d_a, self.d_b
        no_mask = torch.zeros_like(b)
        with precision.autocast():
            fake_b = g_ab(a, mask, noise)
            fake_a = g_ba(b, noise)
            adversarial = (generator_adversarial_loss("lsgan", d_b(fake_b))
                           + generator_adversarial_loss("lsgan", d_a(fake_a)))
            zero = torch.zeros((), device=a.device)
            cycle = ((g_ba(fake_b, noise) - a).abs().mean() + (g_ab(fake_a, no_mask, noise) - b).abs().mean()
                     if config.lambda_cycle else zero)
            identity = ((g_ab(b, no_mask, noise) - b).abs().mean() + (g_ba(a, noise) - a).abs().mean()
                        if config.lambda_identity else zero)
            nce = patch_nce(g_ab.encode(a, mask), g_ab.encode(fake_b, mask), self.projector, mask, config.nce_patches,
                            noise)
            spectrum = rpsd_l1(fake_b, b)
            histogram = histogram_w1(fake_b, b)
            structure = structure_loss(fake_b, a, mask) if config.lambda_structure else zero
            total = (adversarial + config.lambda_cycle * cycle + config.lambda_identity * identity
                     + config.lambda_nce * nce + config.lambda_rpsd * spectrum + config.lambda_histogram * histogram
                     + config.lambda_structure * structure)
        precision.update(total, self.optimise_g)

        with precision.autocast():
            d_loss = (discriminator_loss("lsgan", d_b(b), d_b(fake_b.detach()))
                      + discriminator_loss("lsgan", d_a(a), d_a(fake_a.detach())))
        precision.update(d_loss, self.optimise_d)
        precision.end_step()
        return {"adversarial": adversarial.item(), "cycle": cycle.item(), "identity": identity.item(),
                "nce": nce.item(), "rpsd": spectrum.item(), "histogram": histogram.item(),
                "structure": structure.item(), "discriminator": d_loss.item()}

    def summarise(self, steps: list[dict[str, float]]) -> dict[str, float]:
        """The logged step's own losses (this translator's log has always shown them unaveraged)."""
        return dict(steps[-1])

    def log_extras(self) -> dict[str, float]:
        return {"seconds": round(time.time() - self.started, 1)}

    def postfix(self, row: dict) -> dict[str, str]:
        return {"adversarial": f"{row['adversarial']:.3g}", "rpsd": f"{row['rpsd']:.3g}",
                "structure": f"{row['structure']:.3g}"}


def train_translator(synthetic: list[np.ndarray], masks: list[np.ndarray], real: list[np.ndarray],
                     config: UnpairedConfig, dose_per_pixel: float | None = None,
                     out_dir: str | os.PathLike | None = None, resume: bool = False,
                     device: torch.device = torch.device("cpu"), amp: bool = False) -> tuple[Translator, list[dict]]:
    """Train on standardised random tiles; returns the translator and this run's log rows.

    `dose_per_pixel` (the scenes' counts scale) is needed for the physics input. With `out_dir`
    the model, its log and checkpoints are written there (`resume`: continue the run saved there).
    `amp`: mixed precision on a CUDA `device` (see `cryorefine.training.MixedPrecision`).
    """
    task = ContrastiveTask(synthetic, masks, real, config, dose_per_pixel, device)
    rows = TrainingLoop(task, out_dir, config.steps, config.log_every, config.checkpoint_every, device, amp,
                        resume=resume).run()
    translator = task.translator()
    translator.generator.eval()
    return translator, rows


def structure_loss(output: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |low-pass(output) − low-pass(source)| inside the masks (0 for a batch without particles)."""
    inside = (mask > 0).to(output.dtype)
    difference = (gaussian_low_pass(output, LOW_PASS_SIGMA_PX) - gaussian_low_pass(source, LOW_PASS_SIGMA_PX)).abs()
    return (difference * inside).sum() / inside.sum().clamp_min(1.0)
