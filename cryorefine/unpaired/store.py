"""A translator's model file, `translator.pt`, in the training loop's saved-model format (`cryorefine.training`).

Written by `translate train` as checkpoints (with optimisers and RNG streams, so a run resumes) or
by `save_translator` from a translator in memory (weights only); either loads here, with its kind
checked. Files of the earlier translator-only format (no `format` in their config) still load.
"""

from __future__ import annotations

import csv
from pathlib import Path

from cryorefine.artifacts import TranslatorFolder
from cryorefine.errors import InputError
from cryorefine.gan.config import ModelConfig
from cryorefine.io.atomic import atomic_path
from cryorefine.normalisation import Normalisation
from cryorefine.training import TRANSLATOR_FILES, check_checkpoint, load_checkpoint_file, write_checkpoint
from cryorefine.unpaired.config import CONFIG_VERSION, FORMATS, DiffusionConfig, UnpairedConfig
from cryorefine.unpaired.diffusion import Denoiser, DiffusionTranslator
from cryorefine.unpaired.methods import MicrographNoise
from cryorefine.unpaired.model import MaskConditionedGenerator
from cryorefine.unpaired.train import Translator


AnyTranslator = Translator | DiffusionTranslator


def save_translator(translator: AnyTranslator, out_dir: Path, rows: list[dict]) -> None:
    """translator.pt (the translating network only: not resumable), config.json and log.csv (the loss rows),
    each written atomically."""
    network = translator.denoiser if isinstance(translator, DiffusionTranslator) else translator.generator
    write_checkpoint(out_dir, TRANSLATOR_FILES, translator.description(), {translator.NETWORK: network.state_dict()})
    with atomic_path(out_dir / TranslatorFolder.LOG) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["step"])
        writer.writeheader()
        writer.writerows(rows)


def load_translator(path: Path) -> AnyTranslator:
    """The translator saved in `path`; a foreign, damaged or GAN file is one InputError naming it."""
    stored = load_checkpoint_file(path, TRANSLATOR_FILES)
    if "format" not in stored["config"] and "method" in stored:
        config, state = _from_first_format(stored)
    else:
        config, state = check_checkpoint(stored, path, TRANSLATOR_FILES, FORMATS.values())
        if config.get("config_version") != CONFIG_VERSION:
            raise InputError(path, f"translator config version {config.get('config_version')} is not supported "
                             f"(this cryorefine reads version {CONFIG_VERSION})")
    try:
        return _translator(config, state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(path, f"not a translator model of this cryorefine version ({type(exc).__name__}: {exc}); "
                               "train it again") from None


def _from_first_format(stored: dict) -> tuple[dict, dict]:
    """(config, state) of a translator.pt written before the shared format: settings, domains and
    `network` side by side, no format."""
    settings = dict(stored["config"])
    if stored["method"] == "contrastive":
        settings.setdefault("input", "clean")  # saved before the physics input existed: trained on the clean micrograph
    network = DiffusionTranslator.NETWORK if stored["method"] == "diffusion" else Translator.NETWORK
    config = {"method": stored["method"], "settings": settings, "synthetic": stored["synthetic"],
              "real": stored["real"], "noise_power": stored.get("noise_power"), "condition": stored.get("condition")}
    return config, {network: stored["network"]}


def _translator(config: dict, state: dict) -> AnyTranslator:
    settings = dict(config["settings"])
    model = ModelConfig(**settings.pop("model"))
    synthetic, real = Normalisation(**config["synthetic"]), Normalisation(**config["real"])
    # Models saved before the coloured baseline existed have no measured real spectrum.
    power = config.get("noise_power")
    noise = MicrographNoise(tuple(power)) if power else None
    if config["method"] == "diffusion":
        diffusion = DiffusionConfig(model=model, **settings)
        denoiser = Denoiser(model, diffusion.timesteps)
        denoiser.load_state_dict(state[DiffusionTranslator.NETWORK])
        return DiffusionTranslator(denoiser.eval(), synthetic, real, config=diffusion, noise=noise, **config["condition"])
    generator = MaskConditionedGenerator(model)
    generator.load_state_dict(state[Translator.NETWORK])
    return Translator(generator.eval(), synthetic, real, UnpairedConfig(model=model, **settings), noise)
