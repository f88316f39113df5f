"""Unpaired translation: seamless tiling, the PatchNCE term, and train/apply/evaluate end to end."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
import torch
from torch import nn

from conftest import REAL_MICROGRAPH, TRPV1, run_cli
from cryorefine.unpaired.data import real_micrograph
from cryorefine.unpaired.losses import patch_nce
from cryorefine.unpaired.model import PatchProjector
from cryorefine.unpaired.tiling import apply_tiled


REAL = REAL_MICROGRAPH
TRPV1_MAP = TRPV1 / "consensus_map.mrc"


def _conv_model() -> nn.Module:
    torch.manual_seed(0)
    # Receptive field radius 3 (three 3x3 convolutions), well inside the 8 px margin.
    return nn.Sequential(*(nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="reflect")
                           for c_in, c_out in ((2, 4), (4, 4), (4, 1))))


def test_tiled_application_matches_a_whole_image_pass_away_from_the_edges():
    model = _conv_model()
    rng = np.random.default_rng(0)
    image, mask = rng.normal(size=(150, 170)).astype(np.float32), (rng.random((150, 170)) > 0.7).astype(np.float32)
    tiled = apply_tiled(lambda x, m: model(torch.cat([x, m], 1)), image, mask, tile=48, margin=8)
    with torch.no_grad():
        whole = model(torch.from_numpy(np.stack([image, mask]))[None])[0, 0].numpy()
    assert tiled.shape == image.shape
    np.testing.assert_allclose(tiled[3:-3, 3:-3], whole[3:-3, 3:-3], atol=1e-5)


def test_tiled_noise_has_no_seams():
    """Independent noise per window: the variance at window borders equals that inside windows."""
    generator = torch.Generator().manual_seed(0)
    noisy = lambda x, m: x + torch.randn(x.shape, generator=generator)  # noqa: E731
    image = np.zeros((400, 400), dtype=np.float32)
    out = apply_tiled(noisy, image, image, tile=64, margin=12)
    core = 64 - 24
    border_columns = np.concatenate([np.arange(k * core - 2, k * core + 2) for k in range(1, 400 // core)])
    inner_columns = np.concatenate([np.arange(k * core + 15, k * core + 25) for k in range(0, 400 // core)])
    assert out[:, border_columns].var() == pytest.approx(out[:, inner_columns].var(), rel=0.05)
    assert out.var() == pytest.approx(1.0, rel=0.05)


def test_patch_nce_prefers_outputs_that_keep_the_layout():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(2, 8, 16, 16)]
    mask = (torch.rand(2, 1, 32, 32) > 0.8).float()
    projector = PatchProjector([8])
    kept = patch_nce(features, [features[0] + 0.1 * torch.randn_like(features[0])], projector, mask, 32, generator)
    scrambled = [features[0].flatten(2)[:, :, torch.randperm(256)].reshape(2, 8, 16, 16)]
    lost = patch_nce(features, scrambled, projector, mask, 32, generator)
    assert kept < lost


def test_real_micrograph_is_resampled_and_split_without_overlap():
    train, heldout = real_micrograph(REAL, 8.0, 0.25)
    side = int(round(682 * mrcfile.open(REAL).voxel_size.x.item() / 8.0)) // 2 * 2
    assert train.shape[0] == heldout.shape[0] == side
    assert train.shape[1] + heldout.shape[1] == side
    assert heldout.shape[1] == pytest.approx(0.25 * side, abs=1)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    map_path = TRPV1_MAP
    folder = tmp_path_factory.mktemp("unpaired") / "scenes"
    result = run_cli("scene", "--species", f"{map_path}:8", "--size", "160", "--pixel-size", "8", "--dose", "40",
                     "--n-micrographs", "2", "--out", folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize("method", ["contrastive", "diffusion"])
def test_train_apply_evaluate_end_to_end(tmp_path, scenes, method):
    real = REAL
    model = tmp_path / "model"
    result = run_cli("translate", "train", "--method", method, "--scenes", scenes, "--real", real, "--out", model,
                     "--steps", "6", "--base-channels", "4", "--depth", "2", "--batch-size", "2", "--tile", "32",
                     "--sampling-steps", "3", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert (model / "translator.pt").is_file() and (model / "log.csv").is_file()
    assert json.loads((model / "config.json").read_text())["method"] == method

    override = ["--sampling-steps", "2", "--guidance", "0.5", "--start-level", "0.4"]
    result = run_cli("translate", "apply", "--model", model, *override, "--scenes", scenes, "--out", tmp_path / "o")
    if method == "contrastive":
        assert result.returncode == 2 and "diffusion model only" in result.stderr and not (tmp_path / "o").exists()
    else:  # partial diffusion from the physics image
        assert result.returncode == 0, result.stderr
        assert np.isfinite(mrcfile.read(tmp_path / "o" / "translated_000.mrc")).all()

    sets = {}
    for name, source in ((method, ["--model", model]), ("gaussian", ["--baseline", "gaussian"]),
                         ("coloured", ["--baseline", "coloured", "--real", real]),
                         ("realbg", ["--baseline", "real-background", "--real", real]),
                         ("realbg_training", ["--baseline", "real-background", "--background-strip", "training",
                                              "--real", real])):
        sets[name] = tmp_path / name
        result = run_cli("translate", "apply", *source, "--scenes", scenes, "--out", sets[name],
                         "--tile", "64", "--margin", "8")
        assert result.returncode == 0, result.stderr
    for index in range(2):
        output = mrcfile.read(sets[method] / f"translated_{index:03d}.mrc")
        assert output.shape == (160, 160) and np.isfinite(output).all() and output.std() > 0
        for copied in (f"coords_{index:03d}.star", f"mask_{index:03d}.mrc"):
            assert (sets[method] / copied).read_bytes() == (scenes / copied).read_bytes()

    evaluation = tmp_path / "evaluation"
    result = run_cli("evaluate", "micrographs", "--sets", *(f"{k}={v}" for k, v in sets.items()), "--real", real,
                     "--scenes", scenes, "--out", evaluation, "--tile", "32", "--classifier-steps", "10",
                     "--classifier-repeats", "2")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert set(metrics) == {*sets, "real"}
    for name in sets:
        values = metrics[name]
        assert 0 <= values["classifier_auc"] <= 1 and len(values["classifier_aucs"]) == 2
        assert values["rpsd_l1"] >= 0 and -1 <= values["mask_preservation"] <= 1
    for figure in ("micrographs.png", "noise_power.png", "rpsd.png"):
        assert (evaluation / "plots" / figure).is_file()


def test_translate_without_a_model_is_a_one_line_error(tmp_path, scenes):
    result = run_cli("translate", "apply", "--model", tmp_path / "nothing", "--scenes", scenes, "--out", tmp_path / "o")
    assert result.returncode == 2 and "translator.pt" in result.stderr and "Traceback" not in result.stderr


def test_picking_experiment_from_the_command_line(tmp_path, scenes):
    from cryorefine.metrics.results import PickingReport

    pytest.importorskip("topaz")
    real = REAL
    for name, source in (("gaussian", ["--baseline", "gaussian"]),
                         ("realbg", ["--baseline", "real-background", "--real", real])):
        assert run_cli("translate", "apply", *source, "--scenes", scenes, "--out", tmp_path / name).returncode == 0
    out = tmp_path / "picking"
    result = run_cli("evaluate", "picking", "--train", f"gaussian={tmp_path / 'gaussian'}", "--test",
                     tmp_path / "realbg", "--particle-diameter", "110", "--steps", "5", "--out", out)
    assert result.returncode == 0, result.stderr
    report = PickingReport.read(out)
    assert report.to_dict() == json.loads((out / "picking.json").read_text())
    scores = report.results["gaussian"]
    assert 0 <= scores.average_precision <= 1 and scores.n_true > 0
    assert scores.n_train_particles == 16  # 8 per training micrograph

    for bad in ([], ["--particle-diameter", "-5"], ["--particle-diameter", "100000"]):
        result = run_cli("evaluate", "picking", "--train", f"gaussian={tmp_path / 'gaussian'}", "--test",
                         tmp_path / "realbg", *bad, "--out", tmp_path / "again")
        assert result.returncode == 2 and "particle" in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "again").exists()


def test_a_tile_larger_than_the_training_images_is_a_one_line_error(tmp_path, scenes):
    real = REAL
    result = run_cli("translate", "train", "--method", "diffusion", "--scenes", scenes, "--real", real,
                     "--out", tmp_path / "m", "--steps", "2", "--tile", "512")
    assert result.returncode == 2 and "--tile 512" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("argv, message", [
    (["apply", "--baseline", "gaussian", "--tile", "32", "--margin", "16"], "--margin"),
    (["apply", "--baseline", "gaussian", "--guidance", "2"], "--guidance"),
    (["train", "--real", "REAL", "--steps", "0"], "--steps"),
    (["train", "--real", "REAL", "--sampling-steps", "0"], "--sampling-steps"),
    (["train", "--real", "REAL", "--start-level", "1.5"], "--start-level"),
    (["train", "--real", "REAL", "--lambda-structure", "nan"], "--lambda-structure"),
    (["apply", "--baseline", "gaussian", "--start-level", "0"], "--start-level"),
    (["apply", "--baseline", "coloured"], "--real"),
])
def test_impossible_settings_are_one_line_errors(tmp_path, scenes, argv, message):
    real = str(REAL)
    argv = [real if a == "REAL" else a for a in argv]
    result = run_cli("translate", *argv, "--scenes", scenes, "--out", tmp_path / "out")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_model_file_that_is_not_a_translator_is_a_one_line_error(tmp_path, scenes):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "translator.pt").write_text("not a model")
    result = run_cli("translate", "apply", "--model", tmp_path / "model", "--scenes", scenes, "--out", tmp_path / "o")
    assert result.returncode == 2 and "not a translator model" in result.stderr and "Traceback" not in result.stderr


def test_a_set_with_more_micrographs_than_its_scene_is_a_one_line_error(tmp_path, scenes):
    real = REAL
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("micrograph", "mask"):
        (folder / f"{name}_005.mrc").write_bytes((scenes / f"{name}_000.mrc").read_bytes())
    result = run_cli("evaluate", "micrographs", "--sets", f"a={folder}", "--real", real, "--scenes", scenes,
                     "--out", tmp_path / "e")
    assert result.returncode == 2 and "beyond the 2" in result.stderr and "Traceback" not in result.stderr


def test_a_constant_real_micrograph_is_a_one_line_error(tmp_path, scenes):
    with mrcfile.new(tmp_path / "flat.mrc") as handle:
        handle.set_data(np.full((200, 200), 7.0, dtype=np.float32))
        handle.voxel_size = 8.0
    result = run_cli("translate", "apply", "--baseline", "coloured", "--real", tmp_path / "flat.mrc", "--scenes", scenes,
                     "--out", tmp_path / "o")
    assert result.returncode == 2 and "flat.mrc" in result.stderr and "constant" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()
