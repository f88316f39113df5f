"""The saved GAN: MODEL_DIR/checkpoint.pt (weights, optimisers, RNG, step) + MODEL_DIR/config.json.

The file format is the training loop's (`cryorefine.training`): both files are written atomically,
so a killed run keeps its previous checkpoint, and loading runs no pickled code and refuses a
checkpoint whose embedded config disagrees with config.json or with the settings of a run that
resumes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cryorefine import __version__
from cryorefine.artifacts import ModelFolder
from cryorefine.errors import InputError
from cryorefine.gan import config as cfg
from cryorefine.gan.models import Generator, build_generator
from cryorefine.normalisation import Normalisation
from cryorefine.training import GAN_FILES, read_checkpoint, write_checkpoint

FORMAT = cfg.MODEL_FORMAT
CHECKPOINT_NAME, CONFIG_NAME = ModelFolder.CHECKPOINT, ModelFolder.CONFIG


@dataclass
class ModelSettings:
    """Everything needed to rebuild and use the model, as stored in config.json."""

    model: cfg.ModelConfig
    loss: cfg.LossConfig
    train: cfg.TrainConfig
    normalisation: Normalisation
    box: int
    pixel_size: float | None  # Å; None in models saved before it was recorded
    # The training sims' intensity scale per optics group (sim -> raw); None where not known
    sim_scales: dict[int, float] | None = None

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "config_version": cfg.CONFIG_VERSION,
            "cryorefine_version": __version__,
            "model": cfg.to_dict(self.model),
            "loss": cfg.to_dict(self.loss),
            "train": cfg.to_dict(self.train),
            "normalisation": {"mean": self.normalisation.mean, "std": self.normalisation.std},
            "box": self.box,
            "pixel_size": self.pixel_size,
            "sim_scales": None if self.sim_scales is None else {str(g): s for g, s in self.sim_scales.items()},
        }

    @classmethod
    def from_dict(cls, values: dict, path: Path) -> "ModelSettings":
        if values.get("format") != FORMAT:
            raise InputError(path, "not a cryorefine GAN model")
        if values.get("config_version") != cfg.CONFIG_VERSION:
            raise InputError(path, f"model config version {values.get('config_version')} is not supported "
                             f"(this cryorefine reads version {cfg.CONFIG_VERSION})")
        try:
            # Models saved before the noise prior existed made all their noise from white maps.
            model = {"noise_prior": "white", **values["model"]}
            return cls(
                model=cfg.from_dict(cfg.ModelConfig, model),
                loss=cfg.from_dict(cfg.LossConfig, values["loss"]),
                train=cfg.from_dict(cfg.TrainConfig, values["train"]),
                normalisation=Normalisation(**values["normalisation"]),
                box=int(values["box"]),
                pixel_size=None if values.get("pixel_size") is None else float(values["pixel_size"]),
                sim_scales=None if values.get("sim_scales") is None else
                {int(g): float(s) for g, s in values["sim_scales"].items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"malformed model config ({exc})") from None


def save_checkpoint(model_dir: str | os.PathLike, settings: ModelSettings, state: dict) -> None:
    """Write checkpoint.pt (settings + `state`: weights, optimisers, RNG, step), then its copy config.json."""
    write_checkpoint(model_dir, GAN_FILES, settings.to_dict(), state)


def load_checkpoint(model_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[ModelSettings, dict]:
    """(settings, state) of a saved model; refuses missing, foreign or inconsistent files."""
    config, state = read_checkpoint(model_dir, GAN_FILES, (FORMAT,), map_location)
    return ModelSettings.from_dict(config, Path(model_dir) / CHECKPOINT_NAME), state


def check_resumable(settings: ModelSettings, model: cfg.ModelConfig, loss: cfg.LossConfig,
                    train: cfg.TrainConfig, box: int, path: Path) -> None:
    """Refuse to resume with settings that would make a different run."""
    if settings.model != model:
        raise InputError(path, f"model settings differ from the checkpoint's ({settings.model} vs {model})")
    if settings.loss != loss:
        raise InputError(path, f"loss settings differ from the checkpoint's ({settings.loss} vs {loss})")
    saved, wanted = cfg.to_dict(settings.train), cfg.to_dict(train)
    changed = [k for k in saved if k not in cfg.RESUMABLE_FIELDS and saved[k] != wanted[k]]
    if changed:
        raise InputError(path, "training settings differ from the checkpoint's: "
                         + ", ".join(f"{k} {saved[k]} -> {wanted[k]}" for k in changed))
    if settings.box != box:
        raise InputError(path, f"the checkpoint was trained on {settings.box} px images, these pairs are {box} px")


def load_generator(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Generator, ModelSettings]:
    """The trained generator in eval mode on `device`, with its settings."""
    settings, state = load_checkpoint(model_dir, map_location=device)
    try:
        generator = build_generator(settings.model, settings.box)
        generator.load_state_dict(state["generator"])
    except (KeyError, RuntimeError) as exc:
        raise InputError(Path(model_dir) / CHECKPOINT_NAME, f"generator weights do not match its config ({exc})") from None
    return generator.to(device).eval(), settings
