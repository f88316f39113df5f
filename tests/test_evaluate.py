"""`cryorefine evaluate` end to end on a tiny synthetic paired set, and its input errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from _pairs import PIXEL_SIZE, make_pairs
from cryorefine.cli import main
from cryorefine.errors import InputError
from cryorefine.io.mrc import read_stack
from cryorefine.io.star import read_particle_star, write_particle_star
from cryorefine.metrics.results import (DenoisingReport, MalformedMetrics, ParticleMetrics, PickingReport,
                                        read_denoising_scores)
from cryorefine.noise import fit_noise_models

N, BOX = 40, 32


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """raw/sim pairs plus fake.star: the sims with fitted white Gaussian noise."""
    folder = make_pairs(tmp_path_factory.mktemp("pairs"), n=N, box=BOX, seed=0)
    raw = torch.from_numpy(read_stack(folder / "raw.mrcs"))
    sim = torch.from_numpy(read_stack(folder / "sim.mrcs"))
    fake = fit_noise_models(raw, sim)["gaussian"].sample(sim, torch.Generator().manual_seed(0))
    _write_set(folder, "fake", fake.numpy())
    return folder


def _write_set(folder: Path, name: str, images) -> None:
    star = read_particle_star(folder / "sim.star")
    particles = star.particles.iloc[: len(images)].copy()
    particles["rlnImageName"] = [f"{i + 1:06d}@{name}.mrcs" for i in range(len(images))]
    with mrcfile.new(folder / f"{name}.mrcs", overwrite=True) as handle:  # as given: blank sets are test cases
        handle.set_data(np.asarray(images, dtype=np.float32))
        handle.set_image_stack()
        handle.voxel_size = PIXEL_SIZE
    write_particle_star(folder / f"{name}.star", star.optics, particles)


def _evaluate(folder: Path, out: Path, *extra: str, fake: str = "fake.star") -> int:
    torch.set_num_threads(1)
    return main(["evaluate", "particles", "--fake", str(folder / fake), "--raw", str(folder / "raw.star"),
                 "--out", str(out), "--classifier-steps", "60", *extra])


def test_evaluate_writes_metrics_and_plots(pairs, tmp_path):
    out = tmp_path / "eval"
    assert _evaluate(pairs, out, "--sim", str(pairs / "sim.star"), "--mask-diameter", "40", "--seed", "3") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == N and metrics["box"] == BOX and metrics["seed"] == 3
    assert metrics["mask_diameter_px"] == pytest.approx(40 / PIXEL_SIZE)
    # White Gaussian noise against coloured raw noise: a visible spectral gap, same pixel variance.
    assert metrics["rpsd"]["l1"] > 0.02
    assert metrics["moments"]["fake"]["std"] == pytest.approx(metrics["moments"]["raw"]["std"], rel=0.05)
    classifier = metrics["classifier"]
    assert classifier["repeats"] == 5 and len(classifier["aucs"]) == 5  # mean ± std over 5 seeds by default
    assert classifier["auc"] == pytest.approx(sum(classifier["aucs"]) / 5)
    assert classifier["auc_std"] == pytest.approx(float(torch.tensor(classifier["aucs"], dtype=torch.float64).std(unbiased=False)))
    assert len(set(classifier["aucs"])) > 1  # each seed has its own split and network
    assert len(metrics["frc"]["raw_vs_sim"]) == BOX // 2
    assert metrics["noise_power"]["log_l1"] > 0.1
    for name in ("rpsd", "histograms", "frc", "noise_power", "panels"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
    assert not list(out.glob(".cryorefine-partial-*"))


def test_evaluate_without_sim_writes_nulls(pairs, tmp_path):
    out = tmp_path / "eval"
    assert _evaluate(pairs, out, "--max-images", "20", "--classifier-repeats", "2") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 20
    assert metrics["frc"] is None and metrics["noise_power"] is None and metrics["curves"]["rpsd_sim"] is None
    assert len(metrics["classifier"]["aucs"]) == 2
    assert (out / "plots" / "rpsd.png").exists() and not (out / "plots" / "frc.png").exists()


def test_fake_identical_to_raw_scores_zero_rpsd(pairs, tmp_path):
    out = tmp_path / "eval"
    assert _evaluate(pairs, out, fake="raw.star") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rpsd"]["l1"] == 0 and metrics["pixel"]["mse"] == 0


def test_metrics_json_reads_back_unchanged_and_a_missing_field_is_named(pairs, tmp_path):
    for extra in (("--sim", str(pairs / "sim.star")), ()):
        out = tmp_path / f"eval{len(extra)}"
        assert _evaluate(pairs, out, "--max-images", "8", "--classifier-repeats", "1", *extra) == 0
        written = json.loads((out / "metrics.json").read_text())
        metrics = ParticleMetrics.read(out)
        assert metrics.to_dict() == written and (metrics.frc is None) == (not extra)
        assert ParticleMetrics.from_dict(written) == metrics
    del written["classifier"]["auc_std"]
    with pytest.raises(MalformedMetrics, match="missing field 'classifier.auc_std'"):
        ParticleMetrics.from_dict(written)
    (out / "metrics.json").write_text(json.dumps(written))
    with pytest.raises(InputError, match="metrics.json: .*missing field 'classifier.auc_std'") as error:
        ParticleMetrics.read(out)
    assert len(str(error.value).splitlines()) == 1


def test_count_mismatch_is_a_one_line_error(pairs, tmp_path, capsys):
    fewer = read_stack(pairs / "fake.mrcs")[: N - 5]
    _write_set(pairs, "short", fewer)
    out = tmp_path / "eval"
    assert _evaluate(pairs, out, fake="short.star") == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert "short.star" in message and f"has {N - 5} particles" in message
    assert not (out / "metrics.json").exists()


def test_missing_stack_is_a_one_line_error(pairs, tmp_path, capsys):
    star = read_particle_star(pairs / "sim.star")
    particles = star.particles.copy()
    particles["rlnImageName"] = [f"{i + 1:06d}@absent.mrcs" for i in range(N)]
    write_particle_star(tmp_path / "absent.star", star.optics, particles)
    code = main(["evaluate", "particles", "--fake", str(tmp_path / "absent.star"), "--raw", str(pairs / "raw.star"),
                 "--out", str(tmp_path / "eval")])
    message = capsys.readouterr().err.strip()
    assert code == 2 and len(message.splitlines()) == 1
    assert "absent.mrcs" in message and "not found" in message


def test_downstream_denoising_from_the_command_line(pairs, tmp_path):
    """One denoiser per training set (rows paired with --clean), scored on held-out raw."""
    torch.set_num_threads(1)
    out = tmp_path / "downstream"
    code = main(["evaluate", "denoising", "--train", f"oracle={pairs / 'raw.star'}", f"gaussian={pairs / 'fake.star'}",
                 "--clean", str(pairs / "sim.star"), "--raw", str(pairs / "raw.star"),
                 "--sim", str(pairs / "sim.star"), "--test", f"again={pairs / 'raw.star'},{pairs / 'sim.star'}",
                 "--steps", "5", "--repeats", "2", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "downstream.json").read_text())
    assert set(report["scores"]) == {"held-out", "again"}
    held_out = report["scores"]["held-out"]
    assert held_out["oracle"]["gap_closed"] == 1 and held_out["gaussian"]["gap_closed"] == 0
    assert held_out["oracle"]["repeats"] == 2 and held_out["oracle"]["gap_closed_std"] == 0
    assert -1 <= held_out["gaussian"]["correlation"] <= 1 and len(held_out["oracle"]["frc"]) == BOX // 2
    scores = read_denoising_scores(out)
    assert {test: {name: score.to_dict() for name, score in by_set.items()} for test, by_set in scores.items()} \
        == report["scores"]


def test_downstream_json_reads_back_unchanged_and_a_missing_field_is_named(pairs, tmp_path):
    out = tmp_path / "downstream"
    assert main(["evaluate", "denoising", "--train", f"oracle={pairs / 'raw.star'}", f"gaussian={pairs / 'fake.star'}",
                 "--clean", str(pairs / "sim.star"), "--raw", str(pairs / "raw.star"), "--sim", str(pairs / "sim.star"),
                 "--steps", "2", "--repeats", "1", "--out", str(out)]) == 0
    text = (out / "downstream.json").read_text()
    written = json.loads(text)
    report = DenoisingReport.read(out)
    assert report.to_dict() == written and DenoisingReport.from_dict(written) == report
    assert json.dumps(report.to_dict(), indent=2) + "\n" == text  # same keys in the same order
    assert report.denoiser.dilations == (1, 2, 4, 8, 1) and report.tests["held-out"][1] == str(pairs / "sim.star")
    del written["denoiser"]["steps"]
    (out / "downstream.json").write_text(json.dumps(written))
    with pytest.raises(InputError, match="downstream.json: .*missing field 'denoiser.steps'") as error:
        DenoisingReport.read(out)
    assert len(str(error.value).splitlines()) == 1


def _picking_json() -> dict:
    """picking.json as `evaluate picking` writes it: one training set, two pickers."""
    runs = [{"average_precision": ap, "n_true": 4, "n_picks": picks, "n_matched": 4, "max_recall": 1.0}
            for ap, picks in ((0.25, 420), (0.75, 427))]
    return {"results": {"gaussian": {"average_precision": 0.5, "average_precision_std": 0.35, "max_recall": 1.0,
                                     "n_true": 4, "n_matched": 4, "runs": runs, "n_train_particles": 16,
                                     "seconds": 6.5}},
            "test": "realbg", "particle_diameter_a": 110.0,
            "picker": {"downsample": 1.0, "label_radius_px": 2.75, "steps": 5, "pretrained": False, "seed": 0,
                       "repeats": 2}}


def test_picking_json_reads_back_unchanged(tmp_path):
    text = json.dumps(_picking_json(), indent=2) + "\n"
    (tmp_path / "picking.json").write_text(text)
    report = PickingReport.read(tmp_path)
    assert report.to_dict() == _picking_json() and PickingReport.from_dict(_picking_json()) == report
    assert json.dumps(report.to_dict(), indent=2) + "\n" == text  # same keys in the same order
    assert report.results["gaussian"].runs[1].n_picks == 427 and report.picker.label_radius_px == 2.75


@pytest.mark.parametrize("keys, named", [
    (("picker", "repeats"), "picker.repeats"),
    (("results", "gaussian", "runs", 1, "n_picks"), "results.gaussian.runs[1].n_picks"),
    (("particle_diameter_a",), "particle_diameter_a"),
])
def test_a_field_missing_from_picking_json_is_named(tmp_path, keys, named):
    written = _picking_json()
    parent = written
    for key in keys[:-1]:
        parent = parent[key]
    del parent[keys[-1]]
    with pytest.raises(MalformedMetrics, match=f"missing field '{re.escape(named)}'"):
        PickingReport.from_dict(written)
    (tmp_path / "picking.json").write_text(json.dumps(written))
    with pytest.raises(InputError, match=f"picking.json: .*missing field '{re.escape(named)}'") as error:
        PickingReport.read(tmp_path)
    assert len(str(error.value).splitlines()) == 1


@pytest.mark.parametrize("extra, words", [
    ((), "the following arguments are required: --clean, --raw, --sim"),
    (("--clean", "SIM"), "the following arguments are required: --raw, --sim"),
    (("--clean", "SIM", "--raw", "RAW", "--sim", "SIM", "--test", "broken"), "NAME=RAW_STAR,SIM_STAR"),
])
def test_downstream_bad_options_are_one_line_errors(pairs, tmp_path, capsys, extra, words):
    names = {"SIM": str(pairs / "sim.star"), "RAW": str(pairs / "raw.star")}
    code = main(["evaluate", "denoising", "--train", f"oracle={pairs / 'raw.star'}", *[names.get(a, a) for a in extra],
                 "--out", str(tmp_path / "d")])
    message = capsys.readouterr().err.strip()
    assert code == 2 and len(message.splitlines()) == 1 and words in message
    assert not (tmp_path / "d").exists()


def test_downstream_constant_training_set_is_a_one_line_error(pairs, tmp_path, capsys):
    _write_set(pairs, "flat", np.zeros((N, BOX, BOX), dtype=np.float32))
    code = main(["evaluate", "denoising", "--train", f"flat={pairs / 'flat.star'}", "--clean", str(pairs / "sim.star"),
                 "--raw", str(pairs / "raw.star"), "--sim", str(pairs / "sim.star"), "--steps", "2",
                 "--repeats", "1", "--out", str(tmp_path / "d")])
    message = capsys.readouterr().err.strip()
    assert code == 2 and len(message.splitlines()) == 1 and "constant" in message
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("legacy, upgraded", [
    (["--fake", "f.star", "--raw", "r.star", "--out", "o"], ["particles", "--fake", "f.star", "--raw", "r.star", "--out", "o"]),
    (["--micrographs", "a=x", "--real", "r.mrc", "--tile", "32", "--out", "o"],
     ["micrographs", "--sets", "a=x", "--real", "r.mrc", "--tile", "32", "--out", "o"]),
    (["--denoise", "a=x.star", "--denoise-clean", "c.star", "--raw", "r.star", "--sim", "s.star", "--denoise-steps=3",
      "--out", "o"],
     ["denoising", "--train", "a=x.star", "--clean", "c.star", "--raw", "r.star", "--sim", "s.star", "--steps=3",
      "--out", "o"]),
    (["--picking-train", "a=x", "--picking-test", "t", "--particle-diameter", "110", "--no-picking-pretrained",
      "--out", "o"],
     ["picking", "--train", "a=x", "--test", "t", "--particle-diameter", "110", "--no-pretrained", "--out", "o"]),
])
def test_the_flag_form_of_earlier_releases_still_works_with_a_line_saying_the_new_one(legacy, upgraded, capsys):
    """Issue 15: evaluate became subcommands; the old spelling keeps working for one release."""
    from cryorefine.commands.evaluate import upgrade_flag_form

    assert upgrade_flag_form(["evaluate", *legacy]) == ["evaluate", *upgraded]
    assert capsys.readouterr().err.strip() == ("cryorefine evaluate: the flag form is deprecated and goes in the "
                                               f"next release; this is: cryorefine evaluate {' '.join(upgraded)}")
    assert upgrade_flag_form(["evaluate", *upgraded]) == ["evaluate", *upgraded]  # the new form is left alone
    assert capsys.readouterr().err == ""
    # --threads, which every command takes, may come first (the Scipion plugin of the last release puts it there)
    assert upgrade_flag_form(["evaluate", "--threads", "2", *legacy]) == ["evaluate", upgraded[0], "--threads", "2",
                                                                         *upgraded[1:]]
    assert upgrade_flag_form(["evaluate", "--threads=2", *legacy])[:3] == ["evaluate", upgraded[0], "--threads=2"]


def test_a_legacy_command_line_runs_end_to_end(pairs, tmp_path, capsys):
    out = tmp_path / "legacy"
    code = main(["evaluate", "--fake", str(pairs / "fake.star"), "--raw", str(pairs / "raw.star"), "--max-images", "20",
                 "--classifier-steps", "5", "--classifier-repeats", "1", "--out", str(out)])
    assert code == 0 and (out / "metrics.json").is_file()
    assert "deprecated" in capsys.readouterr().err
