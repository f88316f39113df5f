"""The shared training loop: exact resume of both translators, one saved-model format checked on load,
and translator files of the earlier format still loading."""

from __future__ import annotations

import csv
from dataclasses import asdict

import numpy as np
import pytest
import torch

from conftest import REAL_MICROGRAPH
from cryorefine import cli
from cryorefine.errors import InputError, OutputError
from cryorefine.gan.checkpoint import load_checkpoint
from cryorefine.gan.config import ModelConfig
from cryorefine.training import GAN_FILES, TRANSLATOR_FILES, read_checkpoint, write_checkpoint
from cryorefine.unpaired.config import UnpairedConfig
from cryorefine.unpaired.store import load_translator
from cryorefine.unpaired.train import train_translator

TINY = ["--steps", "6", "--base-channels", "4", "--depth", "2", "--batch-size", "2", "--tile", "32",
        "--checkpoint-every", "2", "--device", "cpu"]  # bit-exact comparisons need the CPU


@pytest.fixture
def scenes(tiny_scenes):
    return tiny_scenes


@pytest.fixture
def one_thread():
    """Bit-exact CPU sums need the same split into threads in every run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(scenes, out, *options) -> None:
    argv = ["translate", "train", "--scenes", scenes, "--real", REAL_MICROGRAPH, "--out", out, *TINY, *options]
    assert cli.main([str(a) for a in argv]) == 0


def _losses(model) -> list[dict]:
    with open(model / "log.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("method", ["contrastive", "diffusion"])
def test_a_resumed_translator_run_equals_an_uninterrupted_one(scenes, tmp_path, one_thread, method):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _train(scenes, straight, "--method", method, "--log-every", "1")
    _train(scenes, resumed, "--method", method, "--log-every", "1", "--steps", "3")
    _train(scenes, resumed, "--method", method, "--log-every", "1", "--resume")
    a = read_checkpoint(straight, TRANSLATOR_FILES, (f"cryorefine-{method}",))[1]
    b = read_checkpoint(resumed, TRANSLATOR_FILES, (f"cryorefine-{method}",))[1]
    assert a["step"] == b["step"] == 6 and a.keys() == b.keys()
    for part in a:
        if isinstance(a[part], dict) and part.startswith("opt_"):
            for index, values in a[part]["state"].items():
                assert torch.equal(values["exp_avg"], b[part]["state"][index]["exp_avg"]), (part, index)
        elif isinstance(a[part], dict) and "state" not in a[part]:
            for key, value in a[part].items():
                assert torch.equal(value, b[part][key]) if torch.is_tensor(value) else value == b[part][key], (part, key)
    assert torch.equal(a["rng_noise"], b["rng_noise"]) and a["rng_tiles"] == b["rng_tiles"]
    assert _losses(straight) == _losses(resumed) and [r["step"] for r in _losses(resumed)] == [str(s) for s in range(1, 7)]
    assert load_translator(resumed / "translator.pt").config == load_translator(straight / "translator.pt").config


def test_translator_resume_refuses_a_different_run(scenes, tmp_path, capsys):
    model = tmp_path / "model"
    _train(scenes, model, "--steps", "2")
    for options, message in ((["--steps", "4"], "already holds a model"),
                             (["--steps", "4", "--resume", "--lambda-nce", "1"], "lambda_nce 5.0 -> 1.0"),
                             (["--steps", "4", "--resume", "--method", "diffusion"], "not a translator model (it holds "
                                                                                     "a contrastive translator)")):
        argv = ["translate", "train", "--scenes", scenes, "--real", REAL_MICROGRAPH, "--out", model, *TINY, *options]
        capsys.readouterr()
        assert cli.main([str(a) for a in argv]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and message in errors[0], errors
    argv = ["translate", "train", "--scenes", scenes, "--real", REAL_MICROGRAPH, "--out", tmp_path / "new", *TINY]
    assert cli.main([str(a) for a in [*argv, "--resume"]]) == 2
    assert "no translator.pt" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_resuming_a_finished_run_says_there_is_nothing_left_and_keeps_it(scenes, tmp_path, caplog):
    model = tmp_path / "model"
    _train(scenes, model, "--steps", "2")
    saved = (model / "translator.pt").read_bytes(), (model / "log.csv").read_text()
    caplog.clear()
    with caplog.at_level("INFO"):
        _train(scenes, model, "--steps", "2", "--resume")
    assert f"{model} was trained to step 2 already (--steps 2): nothing left to train" in caplog.text
    assert "translator trained in" not in caplog.text
    assert ((model / "translator.pt").read_bytes(), (model / "log.csv").read_text()) == saved


def test_a_model_of_another_kind_is_refused_naming_the_file(tmp_path):
    write_checkpoint(tmp_path / "translator", TRANSLATOR_FILES, {"format": "cryorefine-diffusion"}, {})
    write_checkpoint(tmp_path / "gan", GAN_FILES, {"format": "cryorefine-gan"}, {})
    write_checkpoint(tmp_path / "not_gan", GAN_FILES, {"format": "cryorefine-contrastive"}, {})
    with pytest.raises(InputError, match=r"checkpoint.pt: not a translator model \(it holds a GAN model\)"):
        load_translator(tmp_path / "gan" / "checkpoint.pt")
    with pytest.raises(InputError, match=r"checkpoint.pt: not a cryorefine GAN checkpoint \(it holds a contrastive"):
        load_checkpoint(tmp_path / "not_gan")
    (tmp_path / "translator" / "translator.pt").write_bytes(b"\x80\x02truncated")
    with pytest.raises(InputError, match="translator.pt: not a translator model: unreadable, truncated or corrupt"):
        load_translator(tmp_path / "translator" / "translator.pt")


def test_weights_with_nan_are_not_saved_over_the_last_checkpoint(tmp_path):
    write_checkpoint(tmp_path, GAN_FILES, {"format": "cryorefine-gan"}, {"generator": {"w": torch.ones(2)}})
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(OutputError, match="the generator has NaN"):
        write_checkpoint(tmp_path, GAN_FILES, {"format": "cryorefine-gan"}, {"generator": {"w": torch.tensor([np.nan])}})
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_a_translator_saved_in_the_earlier_format_still_loads(tmp_path):
    """translator.pt as written before the shared format: settings, domains and `network` side by side."""
    rng = np.random.default_rng(0)
    cleans = [np.full((64, 64), 160.0, dtype=np.float32) - 8 * (rng.random((64, 64)) > 0.99) for _ in range(2)]
    masks = [(c < 160).astype(np.float32) for c in cleans]
    real = [rng.normal(5000, 70, size=(64, 64)).astype(np.float32)]
    config = UnpairedConfig(model=ModelConfig(base_channels=4, depth=2), steps=2, batch_size=2, tile=32,
                            input="clean")
    translator, _ = train_translator(cleans, masks, real, config)
    settings = asdict(config)
    del settings["checkpoint_every"], settings["input"]  # fields added after that format
    torch.save({"config": settings, "synthetic": asdict(translator.synthetic), "real": asdict(translator.real),
                "noise_power": list(translator.noise.power), "method": "contrastive",
                "network": translator.generator.state_dict()}, tmp_path / "translator.pt")
    loaded = load_translator(tmp_path / "translator.pt")
    assert loaded.config == config and loaded.noise == translator.noise
    image, mask = torch.randn(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    assert torch.equal(loaded.translate(image, mask, torch.Generator().manual_seed(1)),
                       translator.translate(image, mask, torch.Generator().manual_seed(1)))
