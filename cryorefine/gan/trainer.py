"""The GAN as a task of the training loop (`cryorefine.training`): alternating D / G updates, validation
scores and plots; the loop owns mixed precision, the log, checkpoints and resume.

It consumes any `PairSource` (pairs on disk or simulated on the fly) through a step loader whose
workers read ahead; under DDP every rank reads its own shard of each global batch.

Step order follows pix2pix: the discriminator learns on [sim, raw] vs [sim, fake.detach()], then
the generator learns with the discriminator frozen. Every random draw of step k comes from a
stream seeded by (seed, rank, k) and data order is a function of (seed, k), so a run resumed
from its checkpoint continues exactly as if it had never stopped (bit for bit on CPU).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from cryorefine import noise, plots, spectra
from cryorefine.artifacts import ModelFolder
from cryorefine.errors import InputError, SettingsError
from cryorefine.gan import losses
from cryorefine.gan.checkpoint import FORMAT, GAN_FILES, ModelSettings, check_resumable
from cryorefine.gan.config import LossConfig, ModelConfig, TrainConfig
from cryorefine.gan.data import PairSource, step_loader
from cryorefine.gan.models import PatchDiscriminator, PhysicsPriorGenerator, build_generator
from cryorefine.io.star import particle_keys
from cryorefine.noise import NoiseModel
from cryorefine.normalisation import Normalisation
from cryorefine.training import Distributed, MixedPrecision, TrainingLoop, TrainingTask, distribute

log = logging.getLogger(__name__)

# Fewer training pairs than this get a warning: the model would learn these images, not the data set.
FEW_TRAINING_PAIRS = 200

LOG_COLUMNS = (
    "step", "loss_d", "loss_g", "loss_gan", "loss_l1", "loss_rpsd", "loss_histogram",
    "fixed_rpsd_l1", "fixed_rpsd_mse", "val_rpsd_l1", "val_rpsd_mse", "val_pixel_l1", "val_pixel_mse",
    "val_rpsd_l1_sim",
)


@dataclass(frozen=True)
class Performance:
    """How a run executes; none of it changes what a step computes beyond float rounding, so not saved."""

    num_workers: int = 0  # loader processes reading the stacks ahead of the training step
    compile: bool = False  # torch.compile the training modules (pays a warm-up; helps on GPU)
    channels_last: bool | None = None  # NHWC convolutions; None: on CUDA only


def step_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    """The noise stream of one step on one rank."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint32)[0]))
    return generator


def evaluation_generator(seed: int, device: torch.device) -> torch.Generator:
    """A fresh stream for scoring and plots: identical at every evaluation, untouched by training."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


NOISE_FIT_MAX_IMAGES = 2000


def fit_noise_baselines(pairs: PairSource, rows: np.ndarray, seed: int) -> dict[str, noise.Baseline]:
    """The noise baselines fitted on (at most NOISE_FIT_MAX_IMAGES) of the training `rows`."""
    sample = np.sort(np.random.default_rng(seed).permutation(rows)[:NOISE_FIT_MAX_IMAGES])
    sim, raw = pairs.read(sample)
    if np.allclose(raw, sim, rtol=0, atol=1e-6 * float(np.abs(raw).max())):
        raise InputError(getattr(pairs, "pairs_dir", None), "the raw images equal the simulations: there is no noise "
                         "to learn (is raw.star a copy of sim.star?)")
    keys = particle_keys(pairs.particles().iloc[sample])
    return noise.fit_noise_models(torch.from_numpy(raw), torch.from_numpy(sim), keys, seed)


@torch.no_grad()
def refine(generator: torch.nn.Module, sim: torch.Tensor, batch_size: int, noise: torch.Generator) -> torch.Tensor:
    """G applied in batches to normalised sims (N, 1, H, W)."""
    return torch.cat([generator(sim[i : i + batch_size], noise) for i in range(0, len(sim), batch_size)])




class Trainer(TrainingTask):
    """The GAN's networks, optimisers, data order, validation and plots; `loop` runs them."""

    model_format = FORMAT
    files = GAN_FILES
    log_columns = LOG_COLUMNS
    progress_label = "train"

    def __init__(self, pairs: PairSource, out_dir: str | os.PathLike, model_config: ModelConfig,
                 loss_config: LossConfig, train_config: TrainConfig, device: torch.device, resume: bool = False,
                 distributed: Distributed = Distributed(), performance: Performance = Performance(),
                 noise_prior: NoiseModel | None = None):
        """`noise_prior`: the coloured baseline fitted on the training pairs, which the default
        generator starts from (fitted here on rank 0 of a new run when not given; resumed runs and
        other ranks get it from the checkpoint or from DDP's first broadcast)."""
        deepest = int(math.log2(pairs.box)) - 1  # the U-Net's coarsest level keeps at least 2 px
        if model_config.depth > deepest:
            raise SettingsError(f"--depth {model_config.depth} halves the {pairs.box}-px box below 2 px; "
                                f"use at most {deepest}")
        if loss_config.gan_mode not in losses.GAN_MODES:
            raise SettingsError(f"unknown GAN loss {loss_config.gan_mode!r} (choose from {', '.join(losses.GAN_MODES)})")
        self.pairs = pairs
        self.out_dir = Path(out_dir)
        self.model_config = model_config
        self.loss_config = loss_config
        self.config = train_config
        self.device = device
        self.dist = distributed
        self.performance = performance
        channels_last = performance.channels_last
        self.memory_format = (torch.channels_last if (device.type == "cuda" if channels_last is None else channels_last)
                              else torch.contiguous_format)

        self.train_rows, self.val_rows = pairs.split(train_config.seed, train_config.validation_fraction,
                                                     train_config.max_validation)
        if len(self.train_rows) < FEW_TRAINING_PAIRS:
            log.warning("training on %d pairs: far too few for the model to learn the noise of a data set rather "
                        "than of these images; use a few thousand", len(self.train_rows))
        normalisation = self._same_on_all_ranks(pairs.measure_normalisation(self.train_rows, train_config.seed))
        self.settings = ModelSettings(model_config, loss_config, train_config, normalisation, pairs.box, pairs.pixel_size,
                                      pairs.sim_scales())

        torch.manual_seed(train_config.seed)
        self.generator = build_generator(model_config, pairs.box)
        if isinstance(self.generator, PhysicsPriorGenerator) and not resume and distributed.is_main:
            if noise_prior is None:
                noise_prior = fit_noise_baselines(pairs, self.train_rows, train_config.seed)["coloured"]
            self.generator.prior.fit(noise_prior, normalisation.std)
        self.generator = self.generator.to(device, memory_format=self.memory_format)
        self.discriminator = PatchDiscriminator(model_config).to(device, memory_format=self.memory_format)
        betas = (train_config.beta1, train_config.beta2)
        physical = self.generator.physical_parameters() if isinstance(self.generator, PhysicsPriorGenerator) else []
        physical_ids = {id(p) for p in physical}
        network = [p for p in self.generator.parameters() if id(p) not in physical_ids]
        groups = [{"params": network}]
        if physical:
            groups.append({"params": physical, "lr": train_config.lr_generator * train_config.physical_lr_factor})
        self.opt_g = torch.optim.Adam(groups, lr=train_config.lr_generator, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=train_config.lr_discriminator, betas=betas)
        self.networks = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimisers = {"generator": self.opt_g, "discriminator": self.opt_d}
        self.last_metrics: dict[str, float] = {}
        self.loop = TrainingLoop(self, out_dir, train_config.steps, train_config.log_every,
                                 train_config.checkpoint_every, device, train_config.amp, distributed, resume)

        self.g_train = distribute(self.generator, device, distributed)
        self.d_train = distribute(self.discriminator, device, distributed)
        self.d_frozen = self.discriminator
        if performance.compile:
            self.g_train, self.d_train, self.d_frozen = (torch.compile(m) for m in (self.g_train, self.d_train, self.d_frozen))
        self.fixed_rows = self.val_rows[: train_config.fixed_batch_size]
        self._val_sim, self._val_raw = pairs.batch(self.val_rows, self.settings.normalisation, device)
        self._sim_rpsd_l1 = float(spectra.rpsd_distance(self._val_sim, self._val_raw)[0])

    @property
    def step(self) -> int:
        return self.loop.step

    def _same_on_all_ranks(self, normalisation: Normalisation) -> Normalisation:
        """Rank 0's normalisation everywhere, so every rank trains the same model."""
        if self.dist.world_size == 1:
            return normalisation
        values = torch.tensor([normalisation.mean, normalisation.std], dtype=torch.float64, device=self.device)
        dist.broadcast(values, src=0)
        return Normalisation(*values.tolist())

    def description(self) -> dict:
        return self.settings.to_dict()

    def check_resumable(self, config: dict, path: Path) -> None:
        """Same model, losses and data; the run keeps the checkpoint's normalisation and geometry."""
        settings = ModelSettings.from_dict(config, path)
        check_resumable(settings, self.model_config, self.loss_config, self.config, self.pairs.box, path)
        self.settings = ModelSettings(self.model_config, self.loss_config, self.config, settings.normalisation,
                                      settings.box, settings.pixel_size, settings.sim_scales)

    def loader(self) -> torch.utils.data.DataLoader:
        """(rows, images) of this rank's batches from the current step to the last, read ahead by workers."""
        return step_loader(self.pairs, self.train_rows, self.step, self.config.steps, self.config.batch_size,
                           self.config.seed, self.dist.rank, self.dist.world_size,
                           num_workers=self.performance.num_workers, pin_memory=self.device.type == "cuda")

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised (sim, raw) on the device for each remaining step (sims made here when on the fly)."""
        for rows, images in self.loader():
            yield self.pairs.prepare(np.asarray(rows), images, self.settings.normalisation, self.device)

    def train_step(self, sim: torch.Tensor, raw: torch.Tensor) -> dict[str, float]:
        """One discriminator then one generator update on this step's batch; returns the step's losses."""
        return self.loop.take_step((sim, raw))

    def update(self, batch: tuple[torch.Tensor, torch.Tensor], step: int, precision: MixedPrecision) -> dict[str, float]:
        sim, raw = (images.contiguous(memory_format=self.memory_format) for images in batch)
        noise = step_generator(self.config.seed, self.dist.rank, step, self.device)
        mode = self.loss_config.gan_mode
        with precision.autocast():
            fake = self.g_train(sim, noise)
            # One discriminator call on real and fake together (DDP wants one forward per backward).
            scores = self.d_train(torch.cat([sim, sim]), torch.cat([raw, fake.detach()]))
            loss_d = losses.discriminator_loss(mode, scores[: len(sim)], scores[len(sim):])
        precision.update(loss_d, self.opt_d)

        self.discriminator.requires_grad_(False)  # frozen: the generator step must not train it
        with precision.autocast():
            loss_g = losses.generator_loss(self.loss_config, self.d_frozen(sim, fake), fake, raw)
        precision.update(loss_g.total, self.opt_g)
        precision.end_step()
        self.discriminator.requires_grad_(True)
        return {"loss_d": loss_d.item(), "loss_g": loss_g.total.item(), "loss_gan": loss_g.gan.item(),
                "loss_l1": loss_g.l1.item(), "loss_rpsd": loss_g.rpsd.item(),
                "loss_histogram": loss_g.histogram.item()}

    def validation_fakes(self) -> torch.Tensor:
        self.generator.eval()
        fakes = refine(self.generator, self._val_sim, self.config.batch_size,
                       evaluation_generator(self.config.seed, self.device))
        self.generator.train()
        return fakes

    def evaluate(self) -> dict[str, float]:
        """RPSD (fixed batch and validation) and pixel distances (validation) of fake vs raw."""
        fake = self.validation_fakes().float()
        raw = self._val_raw
        n_fixed = len(self.fixed_rows)
        fixed_l1, fixed_mse = spectra.rpsd_distance(fake[:n_fixed], raw[:n_fixed])
        val_l1, val_mse = spectra.rpsd_distance(fake, raw)
        return {"fixed_rpsd_l1": fixed_l1.item(), "fixed_rpsd_mse": fixed_mse.item(),
                "val_rpsd_l1": val_l1.item(), "val_rpsd_mse": val_mse.item(),
                "val_pixel_l1": (fake - raw).abs().mean().item(), "val_pixel_mse": ((fake - raw) ** 2).mean().item(),
                "val_rpsd_l1_sim": self._sim_rpsd_l1}

    def log_extras(self) -> dict[str, float]:
        self.last_metrics = self.evaluate()
        return self.last_metrics

    def postfix(self, row: dict) -> dict[str, str]:
        return {"loss_d": f"{row['loss_d']:.3f}", "rpsd": f"{row['val_rpsd_l1']:.4f}"}

    def save(self) -> None:
        self.loop.save()

    def on_checkpoint(self) -> None:
        self.write_plots()

    def write_plots(self) -> None:
        plot_dir = self.out_dir / ModelFolder.PLOTS
        plot_dir.mkdir(parents=True, exist_ok=True)
        fake = self.validation_fakes().float().cpu()[:, 0].numpy()
        sim, raw = self._val_sim.cpu()[:, 0].numpy(), self._val_raw.cpu()[:, 0].numpy()
        n = len(self.fixed_rows)
        model = f"model {self.out_dir.name} ({self.settings.model.noise_prior} prior), step {self.step}"
        where = f"{len(self.val_rows)} held-out pairs of {self.pairs.box} px"
        plots.plot_panels(plot_dir / ModelFolder.PANELS_PLOT, sim[:n], fake[:n], raw[:n], fake_label="model",
                          title=f"sim, model and raw: {model}, {where}")
        plots.plot_rpsd_curves(plot_dir / ModelFolder.RPSD_PLOT, {"sim": sim, "model": fake, "raw": raw},
                               title=f"RPSD: {model}, {where}")
        plots.plot_loss_curves(plot_dir / ModelFolder.LOSSES_PLOT, self.out_dir / self.files.log,
                               asdict(self.loss_config), title=f"Training: {model}")

    def run(self) -> dict[str, float]:
        """Train up to `config.steps`; returns the last evaluation (empty if nothing was left to do)."""
        self.loop.run()
        return self.last_metrics
