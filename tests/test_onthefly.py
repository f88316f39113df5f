"""On-the-fly training pairs: the same pairs as `cryorefine simulate`, streamed without a sim stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import run_in_process as run
from cryorefine.errors import InputError
from cryorefine.bench import synthetic_particles
from cryorefine.gan import data as gan_data
from cryorefine.gan import onthefly
from cryorefine.gan import trainer as trainer_module
from cryorefine.gan.config import LossConfig, ModelConfig, TrainConfig
from cryorefine.gan.data import Normalisation, step_loader
from cryorefine.gan.onthefly import OnTheFlyPairs
from cryorefine.gan.trainer import Trainer
from cryorefine.io.mrc import ParticleImages, read_stack
from cryorefine.simulate import SimulateConfig, simulate_pairs

FAST = ["--base-channels", "4", "--depth", "2", "--batch-size", "4", "--log-every", "2", "--checkpoint-every", "2"]
UNIT = Normalisation(mean=0.0, std=1.0)
CPU = torch.device("cpu")



@pytest.fixture(scope="module")
def particles(tmp_path_factory):
    """40 noisy projections of a random map, 32 px at 1.5 Å."""
    return synthetic_particles(tmp_path_factory.mktemp("particles"), n=40, box=32)


def test_on_the_fly_pairs_equal_simulate_output(particles, tmp_path):
    star, volume = particles
    # Re-boxing on: 32 px at 1.5 Å -> 24 px at 2 Å, windowed to 20 px.
    geometry = dict(particles=star, map=volume, box=20, pixel_size=2.0, device="cpu")
    summary = simulate_pairs(SimulateConfig(out=tmp_path / "pairs", **geometry))
    source = OnTheFlyPairs(SimulateConfig(**geometry))
    all_rows = np.arange(len(source))
    scale = source.fit_scale(all_rows, seed=0)[1]
    assert scale == pytest.approx(summary.scale_per_optics_group["1"], rel=1e-4)  # same particles, same fit
    sample_scale = source.fit_scale(all_rows[:20], seed=0)[1]  # a sample: the fit differs a little
    assert sample_scale > 0 and sample_scale != pytest.approx(scale, rel=1e-6)

    rows = np.array([0, 3, 17, 39])
    sim, raw = source.batch(rows, UNIT, CPU)
    assert sim.shape == raw.shape == (4, 1, 20, 20)
    stored_sim, stored_raw = read_stack(tmp_path / "pairs" / "sim.mrcs")[rows], read_stack(tmp_path / "pairs" / "raw.mrcs")[rows]
    np.testing.assert_allclose(raw[:, 0].numpy(), stored_raw, atol=1e-5)
    np.testing.assert_allclose(sim[:, 0].numpy(), stored_sim * (sample_scale / scale), rtol=1e-4, atol=1e-6)
    # read() (noise baselines) gives the same pair unnormalised.
    read_sim, read_raw = source.read(rows)
    np.testing.assert_allclose(read_sim, sim[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(read_raw, raw[:, 0].numpy(), atol=1e-6)
    source.close()


def test_loader_workers_give_the_same_batches_in_order(particles):
    source = OnTheFlyPairs(SimulateConfig(particles=particles[0], map=particles[1], device="cpu"))
    train_rows = np.arange(5, 40)

    def batches(workers: int):
        return [(rows.numpy(), images[0].numpy()) for rows, images in
                step_loader(source, train_rows, 3, 9, batch_size=6, seed=7, num_workers=workers)]

    in_process, streamed = batches(0), batches(2)
    assert len(streamed) == 6
    for (rows_a, images_a), (rows_b, images_b) in zip(in_process, streamed):
        np.testing.assert_array_equal(rows_a, rows_b)
        np.testing.assert_array_equal(images_a, images_b)
        assert set(rows_a) <= set(train_rows)
    # Each step's images are that step's rows of the original stack.
    rows, images = streamed[2]
    np.testing.assert_array_equal(images, ParticleImages(source.simulator.star).read(rows))
    source.close()


def test_train_on_the_fly_writes_a_model(particles, tmp_path):
    star, volume = particles
    out = tmp_path / "model"
    run("train", "--particles", star, "--map", volume, "--box", 24, "--out", out, "--steps", 3,
        "--device", "cpu", "--num-workers", 2, *FAST)
    for name in ("checkpoint.pt", "config.json", "log.csv", "noise_models.json", "simulation.json", "plots/panels.png"):
        assert (out / name).is_file(), name
    record = json.loads((out / "simulation.json").read_text())
    assert record["box"] == 24 and record["scale_per_optics_group"]["1"] > 0
    assert json.loads((out / "config.json").read_text())["box"] == 24
    steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["2", "3"]
    # Resuming continues the on-the-fly run like a pairs run.
    run("train", "--particles", star, "--map", volume, "--box", 24, "--out", out, "--steps", 4,
        "--device", "cpu", "--resume", *FAST)
    assert (out / "log.csv").read_text().splitlines()[-1].startswith("4,")


def test_train_on_the_fly_needs_a_map(particles, tmp_path):
    with pytest.raises(InputError, match="--map"):
        run("train", "--particles", particles[0], "--out", tmp_path / "model", "--steps", 1, "--device", "cpu")


def test_training_reads_samples_and_batches_not_the_data_set(tmp_path, monkeypatch):
    """Setup reads bounded samples and each step reads only its batch, so memory is flat in the particle count."""
    n, batch, steps = 600, 4, 3
    star, volume = synthetic_particles(tmp_path / "particles", n=n, box=16)
    monkeypatch.setattr(onthefly, "SCALE_SAMPLE", 64)
    monkeypatch.setattr(gan_data, "_NORMALISATION_SAMPLE", 64)
    monkeypatch.setattr(trainer_module, "NOISE_FIT_MAX_IMAGES", 64)
    read_counts = []
    original_read = ParticleImages.read

    def counting_read(self, rows):
        read_counts.append(len(rows))
        return original_read(self, rows)

    monkeypatch.setattr(ParticleImages, "read", counting_read)
    source = OnTheFlyPairs(SimulateConfig(particles=star, map=volume, device="cpu"))
    trainer = Trainer(source, tmp_path / "model", ModelConfig(base_channels=4, depth=2), LossConfig(),
                      TrainConfig(steps=steps, batch_size=batch, max_validation=32), CPU)
    setup_reads = sum(read_counts)
    assert setup_reads == 64 + 64 + 64 + 32  # scale fit, normalisation, noise prior fit, validation set
    read_counts.clear()
    for sim, raw in trainer.batches():
        assert sim.shape == raw.shape == (batch, 1, 16, 16)
        trainer.train_step(sim, raw)
    assert read_counts == [batch] * steps
    assert trainer.step == steps
    source.close()


def test_torchrun_two_processes_train_on_the_fly(particles, tmp_path):
    """DDP (gloo on CPU): two ranks, each simulating its own shard, train and save one model."""
    star, volume = particles
    out = tmp_path / "model"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "cryorefine.cli", "train", "--particles", str(star), "--map", str(volume), "--out", str(out),
               "--steps", "2", "--device", "cpu", "--num-workers", "1", *FAST]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "checkpoint.pt").is_file() and (out / "simulation.json").is_file()
    assert [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]] == ["2"]
