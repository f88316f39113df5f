"""`translate --device`: the translators train and translate on the device asked for, refuse one the
machine lacks or a torchrun launch in one line, and a resumed run keeps its random streams' device kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import REAL_MICROGRAPH
from cryorefine import cli
from cryorefine.io.mrc import read_micrograph
from cryorefine.training import TRANSLATOR_FILES, read_checkpoint, write_checkpoint

TINY = ["--steps", "2", "--base-channels", "4", "--depth", "2", "--batch-size", "2", "--tile", "32",
        "--checkpoint-every", "1"]


@pytest.fixture
def scenes(tiny_scenes):
    return tiny_scenes


def _run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def _train(scenes, out, *options) -> int:
    return _run("translate", "train", "--scenes", scenes, "--real", REAL_MICROGRAPH, "--out", out, *TINY, *options)


def _one_error(capsys) -> str:
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("action", ["train", "apply"])
def test_a_gpu_on_a_machine_without_one_is_refused_before_any_work(scenes, tmp_path, capsys, action):
    if action == "train":
        status = _train(scenes, tmp_path / "model", "--device", "cuda")
    else:
        status = _run("translate", "apply", "--baseline", "gaussian", "--scenes", scenes, "--out", tmp_path / "out",
                      "--device", "cuda")
    assert status == 2
    assert "--device cuda requested but no CUDA device is available" in _one_error(capsys)
    assert not (tmp_path / "model").exists() and not (tmp_path / "out").exists()


def test_a_torchrun_launch_is_refused_in_one_line(scenes, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _train(scenes, tmp_path / "model", "--device", "cpu") == 2
    assert "translate runs in one process: start it without torchrun" in _one_error(capsys)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("method", ["contrastive", "diffusion"])
def test_a_run_resumes_only_on_the_kind_of_device_its_streams_were_drawn_on(scenes, tmp_path, capsys, method):
    model = tmp_path / method
    assert _train(scenes, model, "--method", method, "--device", "cpu", "--steps", "1") == 0
    config, state = read_checkpoint(model, TRANSLATOR_FILES, (f"cryorefine-{method}",))
    assert state["rng_noise_device"] == "cpu"
    write_checkpoint(model, TRANSLATOR_FILES, config, {**state, "rng_noise_device": "cuda"})
    capsys.readouterr()
    assert _train(scenes, model, "--method", method, "--device", "cpu", "--resume") == 2
    assert f"{model / 'translator.pt'}: trained with --device cuda: resume it on a cuda device" in _one_error(capsys)
    assert read_checkpoint(model, TRANSLATOR_FILES, (f"cryorefine-{method}",))[1]["step"] == 1  # left as it was


def test_a_run_resumes_only_in_the_precision_it_was_trained_in(scenes, tmp_path, capsys):
    model = tmp_path / "model"
    assert _train(scenes, model, "--device", "cpu", "--steps", "1") == 0
    config, state = read_checkpoint(model, TRANSLATOR_FILES, ("cryorefine-contrastive",))
    assert state["precision"] == "float32"  # no autocast on the CPU
    write_checkpoint(model, TRANSLATOR_FILES, config, {**state, "precision": "bfloat16"})
    capsys.readouterr()
    assert _train(scenes, model, "--device", "cpu", "--resume") == 2
    assert "translator.pt: trained in bfloat16, but this run would compute in float32" in _one_error(capsys)


def test_a_run_saved_before_devices_were_recorded_resumes_on_the_cpu(scenes, tmp_path):
    model = tmp_path / "model"
    assert _train(scenes, model, "--device", "cpu", "--steps", "1") == 0
    config, state = read_checkpoint(model, TRANSLATOR_FILES, ("cryorefine-contrastive",))
    del state["rng_noise_device"], state["precision"]
    write_checkpoint(model, TRANSLATOR_FILES, config, state)
    assert _train(scenes, model, "--device", "cpu", "--resume") == 0
    assert read_checkpoint(model, TRANSLATOR_FILES, ("cryorefine-contrastive",))[1]["step"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["contrastive", "diffusion"])
def test_both_translators_train_and_translate_on_a_gpu(scenes, tmp_path, method):
    model, out = tmp_path / method, tmp_path / f"{method}_out"
    assert _train(scenes, model, "--method", method, "--device", "cuda") == 0
    assert read_checkpoint(model, TRANSLATOR_FILES, (f"cryorefine-{method}",))[1]["rng_noise_device"] == "cuda"
    assert _run("translate", "apply", "--model", model, "--scenes", scenes, "--out", out, "--device", "cuda",
                "--tile", "64", "--margin", "8") == 0
    image, _ = read_micrograph(out / "translated_000.mrc")
    assert image.shape == (128, 128) and np.isfinite(image).all() and image.std() > 0
