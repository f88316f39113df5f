"""Turning clean sims into realistic particles with a trained model: the GAN or a fitted noise baseline.

Shared by `apply` and `generate`, so both add noise the same way. Input sims must be on the
training sims' intensity scale (what `cryorefine simulate` writes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cryorefine import noise
from cryorefine.device import resolve_device
from cryorefine.errors import InputError, SettingsError
from cryorefine.gan.checkpoint import load_generator
from cryorefine.gan.config import NOISE_CHOICES



def load_noise_model(model_dir: str | os.PathLike, kind: str) -> noise.Baseline:
    path = Path(model_dir) / noise.NOISE_MODELS_NAME
    if not path.is_file():
        raise InputError(Path(model_dir), f"no {noise.NOISE_MODELS_NAME} (expected the output folder of `cryorefine train`)")
    try:
        return noise.load_noise_model(model_dir, kind)
    except KeyError:
        raise InputError(path, f"no {kind!r} noise model (a model trained by an older cryorefine? train it again)") from None
    except (ValueError, TypeError, AttributeError, OSError, EOFError) as exc:
        raise InputError(path, f"no usable {kind!r} noise model ({exc})") from None


class Refiner:
    """sim (B, H, W) float32 -> realistic (B, H, W), reproducible from `seed`."""

    def __init__(self, model_dir: str | os.PathLike, kind: str = "gan", device: str | torch.device = "cpu", seed: int = 0):
        if kind not in NOISE_CHOICES:
            raise SettingsError(f"unknown --noise {kind!r} (choose from {', '.join(NOISE_CHOICES)})")
        self.kind = kind
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.random = torch.Generator(device=self.device)
        self.random.manual_seed(seed)
        self.generator, self.settings = load_generator(model_dir, self.device)
        self.noise_model = None if kind == "gan" else load_noise_model(model_dir, kind)

    @property
    def box(self) -> int:
        return self.settings.box

    def check_geometry(self, box: int, pixel_size: float, path: Path) -> None:
        """Refuse images of another box or pixel size than the training pairs': the model's noise has their
        frequencies. A model saved before pixel sizes were recorded is checked by its box only."""
        advice = "(simulate with the same --box and --pixel-size as the training pairs)"
        if box != self.settings.box:
            raise InputError(path, f"images are {box} px but the model was trained on {self.settings.box} px {advice}")
        trained = self.settings.pixel_size
        if trained is not None and abs(pixel_size - trained) > 1e-3 * trained:
            raise InputError(path, f"images are {pixel_size:.4g} Å/px but the model was trained at {trained:.4g} Å/px "
                             f"{advice}")

    @torch.no_grad()
    def __call__(self, sim: np.ndarray, keys: Sequence[str] | None = None) -> np.ndarray:
        """Realistic versions of `sim`; `keys` name the particles (the residual bank skips their own)."""
        clean = torch.from_numpy(np.ascontiguousarray(sim, dtype=np.float32)).to(self.device)
        if self.noise_model is not None:
            return self.noise_model.sample(clean, self.random, keys).cpu().numpy()
        norm = self.settings.normalisation
        fake = self.generator(norm.forward(clean)[:, None], self.random)[:, 0]
        return norm.inverse(fake.float()).cpu().numpy()
