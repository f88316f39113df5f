"""The generator (U-Net with noise injection, predicting a residual added to the sim) and the
conditional PatchGAN discriminator.

Why noise injection: pix2pix's only randomness is dropout, and against very noisy targets it
collapses to a denoised mean. Here fresh Gaussian maps enter with the input and at every decoder
scale, so two calls on the same sim give two different, equally plausible noise realisations.
Why resize + conv: transposed convolutions leave a checkerboard that shows in power spectra.
Why a physics prior (the default): the coloured-noise baseline fitted on the training pairs is
already a strong model of real noise, so the default generator starts from it and learns only
what it misses (pixel statistics, non-stationary structure, signal attenuation and contrast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cryorefine.noise import NOISE_LEVELS, NoiseModel, coloured_noise, draw_levels, noise_std
from cryorefine.gan.config import NOISE_PRIORS, ModelConfig
from cryorefine.spectra import default_bins, ring_indices


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    # Reflect padding: zero padding would put a frame of artificial edges into every spectrum.
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="reflect")


class NoiseInjection(nn.Module):
    """x + scale_c * n, n ~ N(0, 1) per pixel, with a learned scale per channel."""

    def __init__(self, channels: int, init_scale: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), float(init_scale)))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(x.shape[0], 1, *x.shape[2:], generator=generator, device=x.device, dtype=x.dtype)
        return x + self.scale.to(x.dtype) * noise


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), 0.2)
        return F.leaky_relu(self.conv2(x), 0.2)


def channel_widths(config: ModelConfig) -> list[int]:
    return [config.base_channels * min(2**level, 4) for level in range(config.depth + 1)]


class Generator(nn.Module):
    """sim (B, 1, H, W) -> realistic image (B, 1, H, W) = sim + residual(sim, noise).

    Any box works: the input is reflect-padded to a multiple of 2**depth and cropped back.
    Pass a `torch.Generator` to make the noise reproducible.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        widths = channel_widths(config)
        self.stem = ConvBlock(1 + config.noise_channels, widths[0])
        self.down = nn.ModuleList(ConvBlock(widths[i], widths[i + 1]) for i in range(config.depth))
        self.up_conv = nn.ModuleList(conv3x3(widths[i + 1], widths[i]) for i in range(config.depth))
        self.up_block = nn.ModuleList(ConvBlock(2 * widths[i], widths[i]) for i in range(config.depth))
        self.noise_bottom = NoiseInjection(widths[-1], config.noise_init_scale)
        self.noise_up = nn.ModuleList(NoiseInjection(widths[i], config.noise_init_scale) for i in range(config.depth))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, sim: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        height, width = sim.shape[-2:]
        multiple = 2**self.config.depth
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        x = F.pad(sim, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else sim
        noise = torch.randn(x.shape[0], self.config.noise_channels, *x.shape[2:],
                            generator=generator, device=x.device, dtype=x.dtype)
        skips = [self.stem(torch.cat([x, noise], dim=1))]
        for block in self.down:
            skips.append(block(F.avg_pool2d(skips[-1], 2)))
        y = self.noise_bottom(skips.pop(), generator)
        for level in reversed(range(self.config.depth)):
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = F.leaky_relu(self.up_conv[level](y), 0.2)
            y = self.up_block[level](torch.cat([y, skips[level]], dim=1))
            y = self.noise_up[level](y, generator)
        residual = self.head(y)[..., :height, :width]
        return sim + residual


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: [sim, raw or fake] (B, 2, H, W) -> realism score per patch (B, 1, h, w)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        channels = config.discriminator_channels
        layers: list[nn.Module] = [nn.Conv2d(2, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for _ in range(config.discriminator_layers - 1):
            layers += [nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels *= 2
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(channels, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, sim: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([sim, image], dim=1))


class NoisePrior(nn.Module):
    """The fitted coloured noise model in normalised units, with a learned pixel-value correction.

    Buffers (saved with the weights, moved with the module, broadcast by DDP) hold the ring power
    spectrum, the per-particle levels and the mean offset. Unit-level noise σ·z is bent pixel by
    pixel, σ·(z + a₂·He₂(z) + a₃·He₃(z)), then scaled by the particle's level; He₂ = z² − 1
    and He₃ = z³ − 3z: a₂ sets the skewness (about 6·a₂) and a₃ the tails, which the U-Net alone
    learns slowly (right-skewed low-dose noise). Both start at zero, so the prior starts as the baseline.
    """

    def __init__(self, box: int):
        super().__init__()
        self.register_buffer("power", torch.zeros(default_bins(box) + 1, dtype=torch.float64))
        self.register_buffer("levels", torch.ones(NOISE_LEVELS, dtype=torch.float64))
        self.register_buffer("offset", torch.zeros((), dtype=torch.float64))
        self.hermite = nn.Parameter(torch.zeros(2))

    def fit(self, model: NoiseModel, scale: float) -> None:
        """Take a coloured baseline fitted on raw's scale, for images normalised as (x − mean) / scale."""
        if model.kind != "coloured" or len(model.noise_power) != len(self.power):
            raise ValueError(f"the noise prior needs the coloured baseline with {len(self.power)} rings")
        self.power.copy_(torch.tensor(model.noise_power, dtype=torch.float64) / scale**2)
        if model.noise_levels:
            self.levels.copy_(torch.tensor(model.noise_levels, dtype=torch.float64))
        self.offset.fill_(model.offset / scale)

    def forward(self, count: int, height: int, width: int, generator: torch.Generator | None,
                dtype: torch.dtype) -> torch.Tensor:
        power = self.power.float()
        sigma = noise_std(power, height, width).clamp_min(1e-12)
        z = coloured_noise(count, height, width, power, None, generator, torch.float32) / sigma  # unit std
        a2, a3 = self.hermite.float()
        bent = sigma * (z + a2 * (z * z - 1) + a3 * (z * z * z - 3 * z))
        level = draw_levels(count, self.levels.float(), generator, torch.float32)  # after the bend: same shape at any level
        return (bent * level + self.offset.float())[:, None].to(dtype)


class SignalEnvelope(nn.Module):
    """A learned gain per Fourier ring on the sim, starting at 1.

    Real particles are weaker than their sims at the refined pose, more so at high frequency:
    radiation damage and motion (a B-factor envelope), pose and shift error, contrast lost in
    thicker ice. No noise model supplies that, and a U-Net learns a smooth radial filter slowly;
    one gain per ring learns it directly.
    """

    def __init__(self, box: int):
        super().__init__()
        self.log_gain = nn.Parameter(torch.zeros(default_bins(box) + 1))

    def forward(self, sim: torch.Tensor) -> torch.Tensor:
        height, width = sim.shape[-2:]
        ring, _ = ring_indices(height, width, len(self.log_gain) - 1, str(sim.device))
        gain = self.log_gain.float().exp()[ring].reshape(height, width // 2 + 1)
        filtered = torch.fft.irfft2(torch.fft.rfft2(sim.float()) * gain, s=(height, width))
        return filtered.to(sim.dtype)


class PhysicsPriorGenerator(Generator):
    """sim -> e(sim) + n + correction(e(sim), n): n drawn from the fitted coloured noise model (`prior`),
    e the learned ring gain (`envelope`), the correction from the U-Net on [e(sim), n] whose output
    layer starts at zero. Gains start at 1, so before training the model is exactly the coloured
    baseline and training can only add to it."""

    def __init__(self, config: ModelConfig, box: int):
        super().__init__(config)
        self.stem = ConvBlock(2 + config.noise_channels, channel_widths(config)[0])
        self.prior = NoisePrior(box)
        self.envelope = SignalEnvelope(box)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def physical_parameters(self) -> list[nn.Parameter]:
        """The few physically meaningful parameters (ring gains, Hermite terms): the trainer gives them a
        larger step, since Adam moves each parameter by about one learning rate per step and a
        B-factor envelope needs a change of ~0.2 in log gain."""
        return [self.envelope.log_gain, self.prior.hermite]

    def forward(self, sim: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        prior = self.prior(sim.shape[0], *sim.shape[-2:], generator, sim.dtype)
        signal = self.envelope(sim)
        return super().forward(torch.cat([signal, prior], dim=1), generator)[:, :1] + prior


def build_generator(config: ModelConfig, box: int) -> Generator:
    """The generator `config.noise_prior` asks for (box sizes the prior's spectrum)."""
    if config.noise_prior not in NOISE_PRIORS:
        raise ValueError(f"unknown noise prior {config.noise_prior!r} (choose from {', '.join(NOISE_PRIORS)})")
    return PhysicsPriorGenerator(config, box) if config.noise_prior == "coloured" else Generator(config)
