"""`cryorefine bench train|apply|memory` on tiny data sets: the figures are produced and make sense."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import run_cli
from cryorefine.bench import bench_apply, bench_memory, bench_train, synthetic_particles
from cryorefine.gan.config import ModelConfig
from cryorefine.io.mrc import read_stack

SMALL = ModelConfig(base_channels=4, depth=2)


def test_synthetic_particles_hold_signal(tmp_path):
    star, volume = synthetic_particles(tmp_path, n=300, box=24, snr=1.0)
    images = read_stack(star.parent / "particles.mrcs")
    assert images.shape == (300, 24, 24)  # written in two chunks
    assert images.var() == pytest.approx(2.0, rel=0.15)  # unit noise + signal of the same variance


def test_bench_train_times_simulation_apart_and_counts_flops():
    torch.set_num_threads(1)
    result = bench_train(n=80, box=24, batch_size=4, steps=2, num_workers=1, model=SMALL)
    assert result.steps == 2 and result.device == "cpu"
    assert result.step_ms > 0 and result.simulate_ms > 0
    assert result.simulate_over_step == pytest.approx(result.simulate_ms / result.step_ms, rel=0.01)
    assert result.images_per_s <= result.step_images_per_s
    assert result.gflop_per_step > 0 and result.achieved_tflop_per_s > 0
    assert result.mfu is None and result.peak_bf16_tflop_per_s is None  # MFU only on CUDA
    assert result.peak_rss_mb > 50


def test_bench_apply_rate():
    torch.set_num_threads(1)
    result = bench_apply(n=60, box=24, batch_size=16, model=SMALL)
    assert result.particles == 60 and result.images_per_s > 0 and result.peak_rss_mb > 50


def test_bench_memory_measures_each_size_in_a_fresh_process():
    results = bench_memory((50, 400), box=16, steps=2, batch_size=4, num_workers=1)
    assert [r.particles for r in results] == [50, 400]
    assert all(r.peak_rss_mb > 50 for r in results)
    assert results[1].stack_mb > results[0].stack_mb
    # Flat in the particle count: far less than a fresh process's own size apart.
    assert abs(results[1].peak_rss_mb - results[0].peak_rss_mb) < 0.25 * results[0].peak_rss_mb


def test_bench_cli_prints_json_lines(tmp_path):
    record = tmp_path / "bench.jsonl"
    result = run_cli("bench", "apply", "--particles", 40, "--box", 16, "--base-channels", 4, "--record", record)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["what"] == "apply" and row["images_per_s"] > 0 and "load_average_1min" in row
    assert json.loads(record.read_text()) == row


GPU_ONLY = {"peak_bf16_tflop_per_s", "mfu", "peak_gpu_mb", "cryojax_per_s", "forward_vs_cryojax", "cryojax_r_median",
            "cryojax_r_min"}
EXPECTED = {
    "simulate": {"forward_per_s", "pipeline_per_s", "relion_project_per_s", "forward_vs_relion", "pipeline_vs_relion",
                 "relion_r_median", "load_before", "load_after"},
    "train": {"loader_wait_ms", "simulate_ms", "step_ms", "simulate_over_step", "gflop_per_step", "images_per_s",
              "compiled", "mfu", "peak_gpu_mb"},
    "apply": {"images_per_s", "peak_rss_mb"},
    "translate": {"steps_per_s", "translate_s", "peak_gpu_mb"},
}


def test_gpu_script_dry_run_prints_every_measurement_as_finite_json_lines():
    """`cryorefine bench gpu --dry-run`: the GPU script's code paths on the CPU, one JSON line per measurement."""
    result = run_cli("bench", "gpu", "--dry-run", "--threads", 1)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row["what"] for row in rows] == ["simulate", "train", "apply", "translate", "translate"]
    assert [row["method"] for row in rows[3:]] == ["contrastive", "diffusion"]
    for row in rows:
        assert EXPECTED[row["what"]] <= row.keys(), row
        for key, value in row.items():
            if isinstance(value, float):
                assert math.isfinite(value), (key, row)
            if value is None:
                assert key in GPU_ONLY or (key.startswith("relion") or "vs_relion" in key), (key, row)
