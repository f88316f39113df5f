"""The saved model: MODEL_DIR/checkpoint.pt (weights, optimisers, RNG, step) + MODEL_DIR/config.json.

Both are written atomically, so a killed run keeps its previous checkpoint. Loading uses
`torch.load(weights_only=True)` (no pickled code runs) and refuses a checkpoint whose embedded
config disagrees with config.json or with the settings of a run that resumes it.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from cryorefine import __version__
from cryorefine.artifacts import ModelFolder
from cryorefine.errors import InputError, OutputError
from cryorefine.gan import config as cfg
from cryorefine.gan.models import Generator, build_generator
from cryorefine.io.atomic import atomic_path, write_json
from cryorefine.normalisation import Normalisation

FORMAT = "cryorefine-gan"
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
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"malformed model config ({exc})") from None


def save_checkpoint(model_dir: str | os.PathLike, settings: ModelSettings, state: dict) -> None:
    """Write checkpoint.pt (settings + `state`: weights, optimisers, RNG, step), then its copy config.json.

    Serialised in memory first: torch's own file writer reports a full disk as a bare RuntimeError,
    Python's as an OSError that atomic_path turns into a clear message.
    """
    model_dir = Path(model_dir)
    for part, tensors in state.items():
        if isinstance(tensors, dict) and any(torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all()
                                             for t in tensors.values()):
            raise OutputError(model_dir / CHECKPOINT_NAME, f"the {part} has NaN or infinite values; not saved, the "
                              "earlier checkpoint is left as it was")
    config = settings.to_dict()
    buffer = io.BytesIO()
    torch.save({"config": config, **state}, buffer)
    with atomic_path(model_dir / CHECKPOINT_NAME) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    write_json(model_dir / CONFIG_NAME, config)


def load_checkpoint(model_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[ModelSettings, dict]:
    """(settings, state) of a saved model; refuses missing, foreign or inconsistent files."""
    model_dir = Path(model_dir)
    path = model_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise InputError(model_dir, f"no {CHECKPOINT_NAME} (expected the output folder of `cryorefine train`)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about odd pickle protocols before refusing them
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several kinds for truncated or foreign files
        # torch's message is a paragraph; keep the line that says what was found.
        lines = [line for line in str(exc).splitlines() if line.strip()]
        code = next((line for line in lines if "GLOBAL" in line), None)
        if code is not None:
            raise InputError(path, f"refused: the file asks to run Python code ({code}); "
                             "a foreign or tampered checkpoint, nothing in it was run") from None
        detail = next((line for line in lines if "Unsupported" in line), lines[0].split(". ")[0] if lines else "")
        raise InputError(path, f"unreadable checkpoint, truncated or corrupt ({type(exc).__name__}: {detail.strip()})") from None
    if not isinstance(state, dict) or "config" not in state:
        raise InputError(path, "not a cryorefine GAN checkpoint")
    config = state.pop("config")
    settings = ModelSettings.from_dict(config, path)
    config_path = model_dir / CONFIG_NAME
    if config_path.is_file():
        try:
            beside = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(config_path, f"malformed JSON ({exc})") from None
        if _model_defining(beside) != _model_defining(json.loads(json.dumps(config))):
            raise InputError(config_path, f"does not match the config stored in {CHECKPOINT_NAME}")
    return settings, state


def _model_defining(config: object) -> object:
    """A config without the fields a resumed run may change: a run killed between writing
    checkpoint.pt and config.json leaves them differing only there, and the model is still good."""
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        return config
    train = {k: v for k, v in config["train"].items() if k not in cfg.RESUMABLE_FIELDS}
    return {**config, "train": train}


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
