"""Conditional DDPM translation: real micrograph texture generated around the synthetic structure.

Training uses real tiles only. The condition is the tile's own low-pass (a Gaussian of
`condition_sigma` px), scaled to unit variance by the domain's low-pass std; the denoiser
ε_θ(x_t, t, condition) learns everything the low-pass does not fix (the noise, its spectrum, its
pixel statistics, fine texture) from real data alone, so no pairs are needed.

Translation conditions on the low-pass of the synthetic micrograph made to look like a real
condition (see `DiffusionTranslator`): its particles' positions and shapes. Sampling starts from
pure noise and takes `sampling_steps` strided ancestral steps: the posterior mean given the
predicted clean image plus fresh noise of the forward step's variance β = 1 − ᾱ_t/ᾱ_s (stochastic:
each call is a new realisation). β rather than the posterior variance because with few strided
steps the latter loses variance: with the exact denoiser for white Gaussian data, 16 steps gave
80 % of the data variance with it and 95–109 % with β (tests/test_diffusion.py). Inside the
particle mask the predicted clean image's low frequencies are set to the synthetic structure's at
every step (ILVR-style guidance), so particles stay where and what the mask says while their
surroundings follow the real data.

Partial diffusion (`start_level` < 1, SDEdit-style): instead of pure noise, sampling starts from
the physics image (the coloured baseline, standardised) noised to the level t₀ = start_level·T,
and the condition is that image's own low-pass. Structure coarser than the noise added at t₀
survives, so the particles' low frequencies are kept even without guidance, and the model only
rewrites the texture finer than that.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cryorefine.gan.config import ModelConfig
from cryorefine.gan.models import ConvBlock, channel_widths, conv3x3
from cryorefine.metrics.micrographs import grid_tiles, tile_noise_power
from cryorefine.normalisation import Normalisation
from cryorefine.training import MixedPrecision, TrainingLoop
from cryorefine.unpaired.config import FORMATS, DiffusionConfig, translator_description
from cryorefine.unpaired.data import domain_normalisation, random_tiles
from cryorefine.unpaired.methods import MicrographNoise
from cryorefine.unpaired.task import TranslatorTask

log = logging.getLogger(__name__)

TIME_EMBEDDING = 64


def gaussian_low_pass(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) with reflect padding (no frame of artificial edges)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1))


def cosine_alpha_bar(timesteps: int) -> torch.Tensor:
    """ᾱ_t for t = 0..T (Nichol & Dhariwal's cosine schedule); ᾱ_0 = 1."""
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return (f / f[0]).clamp(min=1e-5, max=1.0).float()


def _time_embedding(t: torch.Tensor, timesteps: int) -> torch.Tensor:
    half = TIME_EMBEDDING // 2
    frequencies = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    angles = (t.float() / timesteps * 1000.0)[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Denoiser(nn.Module):
    """U-Net ε_θ([x_t, condition], t) with the time step entering every block as a scale and shift."""

    def __init__(self, config: ModelConfig, timesteps: int):
        super().__init__()
        self.config, self.timesteps = config, timesteps
        widths = channel_widths(config)
        self.stem = ConvBlock(2, widths[0])
        self.down = nn.ModuleList(ConvBlock(widths[i], widths[i + 1]) for i in range(config.depth))
        self.up_conv = nn.ModuleList(conv3x3(widths[i + 1], widths[i]) for i in range(config.depth))
        self.up_block = nn.ModuleList(ConvBlock(2 * widths[i], widths[i]) for i in range(config.depth))
        # FiLM order = call order: stem, encoder blocks, decoder blocks from the bottom up.
        self.film_channels = [*widths, *reversed(widths[: config.depth])]
        self.time = nn.Sequential(nn.Linear(TIME_EMBEDDING, 4 * TIME_EMBEDDING), nn.SiLU(),
                                  nn.Linear(4 * TIME_EMBEDDING, 2 * sum(self.film_channels)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, noisy: torch.Tensor, condition: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        height, width = noisy.shape[-2:]
        multiple = 2**self.config.depth
        pad = (0, (-width) % multiple, 0, (-height) % multiple)
        x = F.pad(torch.cat([noisy, condition], dim=1), pad, mode="reflect") if any(pad) else torch.cat([noisy, condition], 1)
        films = iter(torch.split(self.time(_time_embedding(t, self.timesteps)), [2 * c for c in self.film_channels], 1))

        def modulate(y: torch.Tensor) -> torch.Tensor:
            scale, shift = next(films).chunk(2, dim=1)
            return y * (1 + scale[..., None, None]) + shift[..., None, None]

        skips = [modulate(self.stem(x))]
        for block in self.down:
            skips.append(modulate(block(F.avg_pool2d(skips[-1], 2))))
        y = skips.pop()
        for level in reversed(range(self.config.depth)):
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = F.leaky_relu(self.up_conv[level](y), 0.2)
            y = modulate(self.up_block[level](torch.cat([y, skips[level]], dim=1)))
        return self.head(y)[..., :height, :width]


@dataclass
class DiffusionTranslator:
    """The trained denoiser (EMA weights), both domains' standardisations and the condition's statistics.

    The synthetic condition is made statistically like the real one: the clean synthetic image is
    scaled by `structure_scale` into real units and real-level white noise (`noise_std`) is added
    before the low-pass, so the low-passed band carries structure and noise in the real proportion.
    Without the noise the model reads the band as noise-free and leaves it empty (a dip in the
    spectrum just above the low-pass, measured in the first experiment).
    """

    denoiser: Denoiser
    synthetic: Normalisation
    real: Normalisation
    structure_scale: float
    noise_std: float
    condition_std: float
    config: DiffusionConfig
    noise: MicrographNoise | None = None

    NETWORK = "averaged_denoiser"  # the saved state entry that holds `denoiser`

    @property
    def needs_physics(self) -> bool:
        return self.config.start_level < 1

    def to(self, device: torch.device) -> DiffusionTranslator:
        """This translator with its network on `device`."""
        self.denoiser.to(device)
        return self

    def description(self) -> dict:
        condition = {"structure_scale": self.structure_scale, "noise_std": self.noise_std,
                     "condition_std": self.condition_std}
        return translator_description("diffusion", self.config, self.synthetic, self.real,
                                      None if self.noise is None else self.noise.power, condition=condition)

    def translate(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None,
                  physics: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised synthetic tiles (B, 1, H, W) + masks -> standardised real-looking tiles.

        Partial diffusion (`start_level` < 1) also needs the standardised physics tiles.
        """
        sigma = self.config.condition_sigma
        structure = image * self.structure_scale
        target = gaussian_low_pass(structure, sigma)  # the particles' low frequencies, noise-free
        inside = self.config.guidance * (mask > 0).to(image.dtype)
        alpha_bar = cosine_alpha_bar(self.config.timesteps)
        start = int(round(self.config.start_level * self.config.timesteps))
        levels = np.linspace(start, 0, self.config.sampling_steps + 1).round().astype(int)
        if self.needs_physics:
            if physics is None:
                raise ValueError("partial diffusion needs the physics image")
            condition = gaussian_low_pass(physics, sigma) / self.condition_std
            x = (math.sqrt(alpha_bar[start].item()) * physics
                 + math.sqrt(1 - alpha_bar[start].item()) * torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device))
        else:
            noise = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
            condition = gaussian_low_pass(structure + self.noise_std * noise, sigma) / self.condition_std
            x = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
        with torch.no_grad():
            for t, s in zip(levels[:-1], levels[1:]):
                if t == s:
                    continue
                a_t, a_s = alpha_bar[t].item(), alpha_bar[s].item()
                eps = self.denoiser(x, condition, torch.full((x.shape[0],), int(t), device=x.device))
                x0 = ((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-8, 8)
                x0 = x0 + inside * (target - gaussian_low_pass(x0, sigma))
                beta = 1 - a_t / a_s
                x = (math.sqrt(a_s) * beta / (1 - a_t) * x0 + math.sqrt(a_t / a_s) * (1 - a_s) / (1 - a_t) * x)
                if s > 0:
                    x = x + math.sqrt(beta) * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x


def _low_pass_variance(images: list[np.ndarray], sigma: float) -> float:
    return float(np.mean([gaussian_low_pass(torch.from_numpy(i)[None, None], sigma).var().item() for i in images]))


def white_noise_std(images: list[np.ndarray], tile: int = 64) -> float:
    """The noise floor: sqrt of the mean power in the outer fifth of the rings (orthonormal DFT)."""
    power = tile_noise_power(grid_tiles(images, tile))
    return float(np.sqrt(power[int(0.8 * len(power)) :].mean()))


def condition_statistics(synthetic: list[np.ndarray], real: list[np.ndarray], sigma: float) -> dict[str, float]:
    """structure_scale, noise_std and condition_std from standardised images of both domains.

    The scale makes Var(low-pass(scale·synthetic + noise)) equal Var(low-pass(real)).
    """
    real_variance = _low_pass_variance(real, sigma)
    noise_std = white_noise_std(real)
    unit_noise = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    noise_variance = noise_std**2 * gaussian_low_pass(unit_noise, sigma).var().item()
    structure_variance = max(real_variance - noise_variance, 0.05 * real_variance)
    scale = math.sqrt(structure_variance / _low_pass_variance(synthetic, sigma))
    return {"structure_scale": scale, "noise_std": noise_std, "condition_std": math.sqrt(real_variance)}


class DiffusionTask(TranslatorTask):
    """ε_θ on random real tiles, with an exponential moving average of its weights for sampling.

    Two streams seeded by `config.seed`: `tiles` draws every batch's tiles, `noise` every time
    step and noise map; both are saved with the checkpoint. The denoiser is built on the CPU (the
    same first weights on any device) and trained on `device`, where `noise` draws too.
    """

    model_format = FORMATS["diffusion"]
    log_columns = ("step", "denoising_mse", "seconds")
    progress_label = "translate train (diffusion)"

    def __init__(self, synthetic: list[np.ndarray], real: list[np.ndarray], config: DiffusionConfig,
                 device: torch.device = torch.device("cpu")):
        self.config, self.device = config, device
        self.synthetic_scale, self.real_scale = domain_normalisation(synthetic), domain_normalisation(real)
        a_images = [self.synthetic_scale.forward(i) for i in synthetic]
        self.b_images = [self.real_scale.forward(i) for i in real]
        self.statistics = condition_statistics(a_images, self.b_images, config.condition_sigma)
        self.real_noise = MicrographNoise.fit(real)
        torch.manual_seed(config.seed)
        self.denoiser = Denoiser(config.model, config.timesteps).to(device)
        self.averaged = copy.deepcopy(self.denoiser).requires_grad_(False)
        self.optimiser = torch.optim.Adam(self.denoiser.parameters(), lr=config.learning_rate)
        self.alpha_bar = cosine_alpha_bar(config.timesteps).to(device)
        self.tiles = np.random.default_rng(config.seed)
        self.noise = torch.Generator(device=device).manual_seed(config.seed)
        self.networks = {"denoiser": self.denoiser, DiffusionTranslator.NETWORK: self.averaged}
        self.optimisers = {"denoiser": self.optimiser}
        self.started = time.time()

    def translator(self) -> DiffusionTranslator:
        return DiffusionTranslator(self.averaged, self.synthetic_scale, self.real_scale, config=self.config,
                                   noise=self.real_noise, **self.statistics)

    def batches(self) -> Iterator[torch.Tensor]:
        self.started = time.time()
        while True:
            yield random_tiles(self.b_images, self.config.tile, self.config.batch_size, self.tiles)[0].to(self.device)

    def update(self, x0: torch.Tensor, step: int, precision: MixedPrecision) -> dict[str, float]:
        """One denoising step on noised real tiles given their own low-pass, then the average follows."""
        config = self.config
        condition = gaussian_low_pass(x0, config.condition_sigma) / self.statistics["condition_std"]
        t = torch.randint(1, config.timesteps + 1, (x0.shape[0],), generator=self.noise, device=x0.device)
        a = self.alpha_bar[t].view(-1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=self.noise, device=x0.device)
        with precision.autocast():
            loss = F.mse_loss(self.denoiser(a.sqrt() * x0 + (1 - a).sqrt() * eps, condition, t), eps)
        precision.update(loss, self.optimiser)
        precision.end_step()
        with torch.no_grad():
            for kept, current in zip(self.averaged.parameters(), self.denoiser.parameters()):
                kept.lerp_(current, 1 - config.ema_decay)
        return {"denoising_mse": loss.item()}

    def log_extras(self) -> dict[str, float]:
        return {"seconds": round(time.time() - self.started, 1)}

    def postfix(self, row: dict) -> dict[str, str]:
        return {"denoising_mse": f"{row['denoising_mse']:.4f}"}


def train_diffusion(synthetic: list[np.ndarray], real: list[np.ndarray], config: DiffusionConfig,
                    out_dir: str | os.PathLike | None = None, resume: bool = False,
                    device: torch.device = torch.device("cpu"), amp: bool = False
                    ) -> tuple[DiffusionTranslator, list[dict]]:
    """Train ε_θ on random real tiles; the synthetic micrographs only set the condition's scale.

    With `out_dir` the model, its log and checkpoints are written there (`resume`: continue the run saved there).
    `amp`: mixed precision on a CUDA `device` (see `cryorefine.training.MixedPrecision`).
    """
    task = DiffusionTask(synthetic, real, config, device)
    rows = TrainingLoop(task, out_dir, config.steps, config.log_every, config.checkpoint_every, device, amp,
                        resume=resume).run()
    translator = task.translator()
    translator.denoiser.eval()
    return translator, rows
