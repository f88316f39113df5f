"""Benchmarks: throughput and memory of simulate (against `relion_project --ctf`), train and apply.

Figures are measured side by side in one run on the same machine; ratios are what to quote
from a CPU, absolute rates only from a GPU (see docs/benchmarks.md). Training is benchmarked on
the fly (the path that scales): loader wait, simulation and the D+G step are timed apart, the
step's FLOPs are counted with FlopCounterMode, and on CUDA divided by the measured bf16 matmul
rate to give the model FLOPs utilisation (MFU). `bench_memory` trains data sets of growing size,
each in a fresh process, and reads that process's peak RSS from the kernel.
"""

from __future__ import annotations

import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from torch.utils.flop_counter import FlopCounterMode

from cryorefine.errors import CryorefineError
from cryorefine.gan.config import LossConfig, ModelConfig, TrainConfig
from cryorefine.io.mrc import StackWriter, write_map
from cryorefine.io.star import particle_parameters, read_particle_star, stack_reference, write_particle_star
from cryorefine.physics.forward import ForwardModel

log = logging.getLogger(__name__)


@dataclass
class SimulateBench:
    particles: int
    box: int
    device: str
    cryorefine_per_s: float  # clean CTF-modulated projections per second (forward model only)
    pipeline_per_s: float  # full `simulate` (read raw, simulate, normalise, write both stacks)
    relion_project_per_s: float | None
    ratio_vs_relion: float | None
    peak_rss_mb: float


_CHUNK = 256  # particles generated, simulated or written at once


@dataclass
class TrainBench:
    particles: int
    box: int
    batch_size: int
    device: str
    num_workers: int
    compiled: bool
    steps: int
    images_per_s: float  # training images per second, all included (loader wait, simulation, step)
    step_images_per_s: float  # the D+G step alone
    loader_wait_ms: float  # mean time waiting for the loader per step
    simulate_ms: float  # mean on-the-fly simulation (re-box, normalise, project, CTF) per batch
    step_ms: float  # mean D+G step
    simulate_over_step: float  # target < 0.1: simulation never the bottleneck
    gflop_per_step: float  # counted by torch.utils.flop_counter (forward + backward of D and G)
    achieved_tflop_per_s: float
    peak_bf16_tflop_per_s: float | None  # measured matmul rate (CUDA only)
    mfu: float | None  # achieved / peak bf16 (CUDA only)
    peak_rss_mb: float
    peak_gpu_mb: float | None


@dataclass
class ApplyBench:
    particles: int
    box: int
    batch_size: int
    device: str
    images_per_s: float  # `cryorefine apply` end to end: read sim stack, GAN, write stack and STAR
    peak_rss_mb: float


@dataclass
class MemoryBench:
    particles: int
    box: int
    steps: int
    batch_size: int
    num_workers: int
    peak_rss_mb: float  # the training process's VmHWM (its loader workers are separate, copy-on-write processes)
    seconds: float
    stack_mb: float  # size of the particle stack on disk (what must not be held in memory)


def synthetic_particles(folder: Path, n: int, box: int, pixel_size: float = 1.5, seed: int = 0,
                        snr: float = 0.1) -> tuple[Path, Path]:
    """A random smooth map and n particles with random poses, origins and CTFs.

    The images are the map's CTF-modulated projections plus white noise at `snr` (signal to noise
    variance), so a sim scale can be fitted; stacks are simulated and written in chunks.
    """
    rng = np.random.default_rng(seed)
    grid = np.arange(box) - box // 2
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    volume = np.zeros((box,) * 3, dtype=np.float32)
    for _ in range(20):
        centre, width = rng.uniform(-box / 5, box / 5, 3), rng.uniform(box / 30, box / 12)
        volume += np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / (2 * width**2))
    folder.mkdir(parents=True, exist_ok=True)
    write_map(folder / "map.mrc", volume, pixel_size)
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
                           "rlnImagePixelSize": [pixel_size], "rlnImageSize": [box], "rlnImageDimensionality": [2]})
    defocus = rng.uniform(8000, 25000, n)
    stack = stack_reference(folder / "particles.mrcs")
    particles = pd.DataFrame({
        "rlnImageName": [f"{i + 1:06d}@{stack}" for i in range(n)],
        "rlnAngleRot": rng.uniform(-180, 180, n), "rlnAngleTilt": np.degrees(np.arccos(rng.uniform(-1, 1, n))),
        "rlnAnglePsi": rng.uniform(-180, 180, n), "rlnOriginXAngst": rng.uniform(-5, 5, n),
        "rlnOriginYAngst": rng.uniform(-5, 5, n), "rlnDefocusU": defocus, "rlnDefocusV": defocus - rng.uniform(-800, 800, n),
        "rlnDefocusAngle": rng.uniform(0, 180, n), "rlnOpticsGroup": np.ones(n, dtype=int),
    })
    write_particle_star(folder / "particles.star", optics, particles)
    params = particle_parameters(read_particle_star(folder / "particles.star"))
    model = ForwardModel(volume, pixel_size)
    gain = None
    with StackWriter(folder / "particles.mrcs", n, box, pixel_size) as writer:
        for start in range(0, n, _CHUNK):
            clean = model.simulate(params.subset(slice(start, start + _CHUNK))).numpy()
            gain = gain or float(np.sqrt(snr) / clean.std())
            writer.write(start, (gain * clean + rng.normal(size=clean.shape)).astype(np.float32))
    return folder / "particles.star", folder / "map.mrc"


def _peak_rss_mb() -> float:
    """This process's peak RSS, or its largest finished child's if larger (loader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def bench_simulate(n: int = 1000, box: int = 128, device: str = "cpu", batch_size: int = 128,
                   relion: bool = True, rounds: int = 3) -> SimulateBench:
    """Alternate cryorefine's forward model and `relion_project --ctf` for `rounds` rounds; keep each one's best.

    Alternating and taking the best round keeps a busy machine from favouring whichever ran first.
    """
    from cryorefine.simulate import SimulateConfig, simulate_pairs

    with tempfile.TemporaryDirectory(prefix="cryorefine-bench-") as tmp:
        folder = Path(tmp)
        star_path, map_path = synthetic_particles(folder, n, box)
        params = particle_parameters(read_particle_star(star_path))
        import mrcfile

        model = ForwardModel(mrcfile.read(map_path).astype(np.float32), 1.5, device=device)
        model.simulate(params.subset(slice(0, 8)))  # warm-up (allocations, lazy CUDA init)
        run_relion = relion and shutil.which("relion_project") is not None
        if relion and not run_relion:
            log.warning("relion_project not found: no RELION comparison")
        forward_times, relion_times = [], []
        for _ in range(rounds):
            _sync(device)
            started = time.perf_counter()
            for start in range(0, n, batch_size):
                model.simulate(params.subset(slice(start, start + batch_size)))
            _sync(device)
            forward_times.append(time.perf_counter() - started)
            if run_relion:
                started = time.perf_counter()
                subprocess.run(["relion_project", "--i", "map.mrc", "--ang", "particles.star", "--o", "relion", "--ctf",
                                "--angpix", "1.5"], cwd=folder, check=True, capture_output=True)
                relion_times.append(time.perf_counter() - started)

        started = time.perf_counter()
        simulate_pairs(SimulateConfig(particles=star_path, map=map_path, out=folder / "pairs", device=device,
                                      batch_size=batch_size))
        pipeline_rate = n / (time.perf_counter() - started)
    forward_rate = n / min(forward_times)
    relion_rate = n / min(relion_times) if relion_times else None
    return SimulateBench(
        particles=n, box=box, device=str(device), cryorefine_per_s=round(forward_rate, 1),
        pipeline_per_s=round(pipeline_rate, 1),
        relion_project_per_s=None if relion_rate is None else round(relion_rate, 1),
        ratio_vs_relion=None if relion_rate is None else round(forward_rate / relion_rate, 2),
        peak_rss_mb=round(_peak_rss_mb(), 1),
    )


def _sync(device: str | torch.device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def measured_matmul_rate(device: torch.device, dtype: torch.dtype = torch.bfloat16, size: int = 8192,
                         repeats: int = 20) -> float:
    """FLOP/s of a large square matmul: the device's practical peak for MFU."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2.0 * size**3 * repeats / (time.perf_counter() - started)


def bench_train(n: int = 2000, box: int = 64, batch_size: int = 16, steps: int = 20, device: str = "cpu",
                num_workers: int = 2, compile: bool = False, model: ModelConfig = ModelConfig(),
                warmup: int = 2) -> TrainBench:
    """Time on-the-fly training: loader wait, simulation and D+G step apart; FLOPs counted on one step."""
    from cryorefine.device import resolve_device
    from cryorefine.gan.onthefly import OnTheFlyPairs
    from cryorefine.gan.trainer import Performance, Trainer
    from cryorefine.simulate import SimulateConfig

    torch_device = resolve_device(device)
    with tempfile.TemporaryDirectory(prefix="cryorefine-bench-") as tmp:
        star_path, map_path = synthetic_particles(Path(tmp), n, box)
        source = OnTheFlyPairs(SimulateConfig(particles=star_path, map=map_path, device=str(torch_device)))
        config = TrainConfig(steps=warmup + steps + 1, batch_size=batch_size, max_validation=16)
        trainer = Trainer(source, Path(tmp) / "model", model, LossConfig(), config, torch_device,
                          performance=Performance(num_workers=num_workers, compile=compile))
        if torch_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(torch_device)
        waits, sims, trains = [], [], []
        loader = iter(trainer.loader())
        for index in range(warmup + steps):
            started = time.perf_counter()
            rows, images = next(loader)
            loaded = time.perf_counter()
            sim, raw = source.prepare(np.asarray(rows), images, trainer.settings.normalisation, torch_device)
            _sync(torch_device)
            simulated = time.perf_counter()
            trainer.train_step(sim, raw)
            _sync(torch_device)
            if index >= warmup:
                waits.append(loaded - started)
                sims.append(simulated - loaded)
                trains.append(time.perf_counter() - simulated)
        with FlopCounterMode(display=False) as counter:
            trainer.train_step(sim, raw)
        flops = counter.get_total_flops()
        del loader
        source.close()
    step_s, sim_s, wait_s = float(np.mean(trains)), float(np.mean(sims)), float(np.mean(waits))
    achieved = flops / step_s
    peak = measured_matmul_rate(torch_device) if torch_device.type == "cuda" else None
    return TrainBench(
        particles=n, box=box, batch_size=batch_size, device=str(torch_device), num_workers=num_workers,
        compiled=compile, steps=steps, images_per_s=round(batch_size / (step_s + sim_s + wait_s), 1),
        step_images_per_s=round(batch_size / step_s, 1), loader_wait_ms=round(1e3 * wait_s, 2),
        simulate_ms=round(1e3 * sim_s, 2), step_ms=round(1e3 * step_s, 2),
        simulate_over_step=round(sim_s / step_s, 4), gflop_per_step=round(flops / 1e9, 3),
        achieved_tflop_per_s=round(achieved / 1e12, 4),
        peak_bf16_tflop_per_s=None if peak is None else round(peak / 1e12, 1),
        mfu=None if peak is None else round(achieved / peak, 4), peak_rss_mb=round(_peak_rss_mb(), 1),
        peak_gpu_mb=(round(torch.cuda.max_memory_allocated(torch_device) / 2**20, 1)
                     if torch_device.type == "cuda" else None),
    )


def bench_apply(n: int = 2000, box: int = 64, batch_size: int = 64, device: str = "cpu",
                model: ModelConfig = ModelConfig()) -> ApplyBench:
    """`cryorefine apply` end to end on a simulated stack, with an (untrained) model of the given size."""
    from cryorefine import cli
    from cryorefine.device import resolve_device
    from cryorefine.gan.onthefly import OnTheFlyPairs
    from cryorefine.gan.trainer import Trainer
    from cryorefine.simulate import SimulateConfig, simulate_pairs

    torch_device = resolve_device(device)
    with tempfile.TemporaryDirectory(prefix="cryorefine-bench-") as tmp:
        folder = Path(tmp)
        star_path, map_path = synthetic_particles(folder, n, box)
        source = OnTheFlyPairs(SimulateConfig(particles=star_path, map=map_path, device=str(torch_device)))
        Trainer(source, folder / "model", model, LossConfig(), TrainConfig(max_validation=16), torch_device).save()
        source.close()
        simulate_pairs(SimulateConfig(particles=star_path, map=map_path, out=folder / "pairs", device=str(torch_device)))
        args = cli.build_parser().parse_args(["apply", "--model", str(folder / "model"), "--particles",
                                              str(folder / "pairs" / "sim.star"), "--out", str(folder / "applied"),
                                              "--batch-size", str(batch_size), "--device", str(torch_device)])
        started = time.perf_counter()
        args.run(args)
        _sync(torch_device)
        rate = n / (time.perf_counter() - started)
    return ApplyBench(particles=n, box=box, batch_size=batch_size, device=str(torch_device),
                      images_per_s=round(rate, 1), peak_rss_mb=round(_peak_rss_mb(), 1))


# Runs `cryorefine ARGS` and writes the process's own peak RSS (VmHWM, kB) to a file. Not ru_maxrss
# from wait4: Linux carries the parent's peak over fork and exec into the child's ru_maxrss.
_PEAK_RECORDING_CHILD = """
import sys
from cryorefine.cli import main
status = main(sys.argv[2:])
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
open(sys.argv[1], "w").write(peak.split()[1])
sys.exit(status)
"""


def bench_memory(sizes: tuple[int, ...] = (1000, 10000, 100000), box: int = 32, steps: int = 20,
                 batch_size: int = 16, num_workers: int = 2) -> list[MemoryBench]:
    """Peak RSS of `cryorefine train` on the fly over `steps` steps, one fresh process per data set size."""
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="cryorefine-bench-") as tmp:
            folder = Path(tmp)
            star_path, map_path = synthetic_particles(folder, n, box)
            peak_file = folder / "peak_kb"
            command = [sys.executable, "-c", _PEAK_RECORDING_CHILD, str(peak_file), "train", "--particles", str(star_path), "--map",
                       str(map_path), "--out", str(folder / "model"), "--device", "cpu", "--steps", str(steps),
                       "--batch-size", str(batch_size), "--num-workers", str(num_workers),
                       "--log-every", str(steps), "--checkpoint-every", str(steps)]
            started = time.perf_counter()
            process = subprocess.run(command, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if process.returncode != 0:
                raise CryorefineError(f"training on {n} particles failed (exit {process.returncode}):\n"
                                      f"{process.stderr[-2000:]}")
            peak_mb = int(peak_file.read_text()) / 1024.0
            results.append(MemoryBench(particles=n, box=box, steps=steps, batch_size=batch_size,
                                       num_workers=num_workers, peak_rss_mb=round(peak_mb, 1),
                                       seconds=round(seconds, 1),
                                       stack_mb=round((folder / "particles.mrcs").stat().st_size / 2**20, 1)))
    return results


def as_row(result) -> dict:
    if result is None:
        raise CryorefineError("benchmark produced no result")
    return asdict(result)
