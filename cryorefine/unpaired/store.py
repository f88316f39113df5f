"""One model file for either translator: `translator.pt` records its method, settings and weights.

Loaded with `weights_only=True` (no pickled code runs), like the paired GAN's checkpoints.
"""

from __future__ import annotations

import csv
import pickle
from dataclasses import asdict
from pathlib import Path

import torch

from cryorefine.artifacts import TranslatorFolder
from cryorefine.errors import InputError
from cryorefine.gan.config import ModelConfig
from cryorefine.io.atomic import atomic_path, write_json
from cryorefine.normalisation import Normalisation
from cryorefine.unpaired.config import DiffusionConfig, UnpairedConfig
from cryorefine.unpaired.diffusion import Denoiser, DiffusionTranslator
from cryorefine.unpaired.methods import MicrographNoise
from cryorefine.unpaired.model import MaskConditionedGenerator
from cryorefine.unpaired.train import Translator


AnyTranslator = Translator | DiffusionTranslator


def save_translator(translator: AnyTranslator, out_dir: Path, rows: list[dict]) -> None:
    """translator.pt, config.json and log.csv (the loss rows), each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {"config": asdict(translator.config), "synthetic": asdict(translator.synthetic),
             "real": asdict(translator.real),
             "noise_power": list(translator.noise.power) if translator.noise is not None else None}
    if isinstance(translator, DiffusionTranslator):
        state.update(method="diffusion", network=translator.denoiser.state_dict(),
                     condition={"structure_scale": translator.structure_scale, "noise_std": translator.noise_std,
                                "condition_std": translator.condition_std})
    else:
        state.update(method="contrastive", network=translator.generator.state_dict())
    with atomic_path(out_dir / TranslatorFolder.MODEL) as tmp:
        torch.save(state, tmp)
    write_json(out_dir / TranslatorFolder.CONFIG, {"method": state["method"], **state["config"]})
    with atomic_path(out_dir / TranslatorFolder.LOG) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["step"])
        writer.writeheader()
        writer.writerows(rows)


def load_translator(path: Path) -> AnyTranslator:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return _translator_from_state(state)
    except (KeyError, TypeError, RuntimeError, pickle.UnpicklingError) as exc:
        raise InputError(path, f"not a translator model of this cryorefine version ({type(exc).__name__}: {exc}); "
                               "train it again") from None


def _translator_from_state(state: dict) -> AnyTranslator:
    values = dict(state["config"])
    model = ModelConfig(**values.pop("model"))
    synthetic, real = Normalisation(**state["synthetic"]), Normalisation(**state["real"])
    # Models saved before the coloured baseline existed have no measured real spectrum.
    power = state.get("noise_power")
    noise = MicrographNoise(tuple(power)) if power else None
    if state["method"] == "diffusion":
        config = DiffusionConfig(model=model, **values)
        denoiser = Denoiser(model, config.timesteps)
        denoiser.load_state_dict(state["network"])
        return DiffusionTranslator(denoiser.eval(), synthetic, real, config=config, noise=noise, **state["condition"])
    generator = MaskConditionedGenerator(model)
    generator.load_state_dict(state["network"])
    # Models saved before the physics input existed were trained on the clean micrograph.
    values.setdefault("input", "clean")
    return Translator(generator.eval(), synthetic, real, UnpairedConfig(model=model, **values), noise)
