"""Benchmarks: throughput and memory of simulate (against `relion_project --ctf`), train and apply.

Figures are measured side by side in one run on the same machine; ratios are what to quote
from a CPU, absolute rates only from a GPU (see docs/benchmarks.md). Training is benchmarked on
the fly (the path that scales): loader wait, simulation and the D+G step are timed apart, the
step's FLOPs are counted with FlopCounterMode, and on CUDA divided by the measured bf16 matmul
rate to give the model FLOPs utilisation (MFU). `bench_memory` trains data sets of growing size,
each in a fresh process, and reads that process's peak RSS from the kernel.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from torch.utils.flop_counter import FlopCounterMode

from cryorefine.artifacts import PairsFolder, ParticlesFolder
from cryorefine.errors import CryorefineError
from cryorefine.gan.config import LossConfig, ModelConfig, TrainConfig
from cryorefine.io.mrc import StackWriter, write_map
from cryorefine.io.star import particle_parameters, read_particle_star, stack_reference, write_particle_star
from cryorefine.metrics.correlation import pearson_rows
from cryorefine.physics.forward import ForwardModel
from cryorefine.synthetic import blob_map, blob_micrograph, optics_table, random_particles

log = logging.getLogger(__name__)


@dataclass
class SimulateBench:
    particles: int
    box: int
    device: str
    rounds: int  # interleaved rounds; each rate is the median round's
    forward_per_s: float  # clean CTF-modulated projections per second (forward model only)
    pipeline_per_s: float  # full `simulate` (read raw, re-box, normalise, project, CTF, write both stacks)
    relion_project_per_s: float | None  # `relion_project --ctf`, one CPU core
    cryojax_per_s: float | None  # cryoJAX's images of the same particles (jit-compiled, batched)
    forward_vs_relion: float | None
    pipeline_vs_relion: float | None
    forward_vs_cryojax: float | None
    relion_r_median: float | None  # correlation of relion_project's images with ours, per image
    cryojax_r_median: float | None  # the same for cryoJAX's (its contrast sign turned to RELION's)
    cryojax_r_min: float | None
    load_before: float
    load_after: float
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
class TranslateBench:
    method: str
    tile: int
    batch_size: int
    device: str
    steps_per_s: float  # training steps (both generators and discriminators, or one denoiser update)
    micrograph_px: int
    translate_s: float  # one micrograph through `translate apply`'s tile-wise translation
    peak_gpu_mb: float | None


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
    volume = blob_map(box, rng, n_blobs=20, widths_px=(box / 30, box / 12), amplitudes=None)
    folder.mkdir(parents=True, exist_ok=True)
    write_map(folder / "map.mrc", volume, pixel_size)
    particles = random_particles(n, rng, stack_reference(folder / ParticlesFolder.PARTICLES_STACK))
    write_particle_star(folder / ParticlesFolder.PARTICLES_STAR, optics_table(box, pixel_size), particles)
    params = particle_parameters(read_particle_star(folder / ParticlesFolder.PARTICLES_STAR))
    model = ForwardModel(volume, pixel_size)
    gain = None
    with StackWriter(folder / ParticlesFolder.PARTICLES_STACK, n, box, pixel_size) as writer:
        for start in range(0, n, _CHUNK):
            clean = model.simulate(params.subset(slice(start, start + _CHUNK))).numpy()
            gain = gain or float(np.sqrt(snr) / clean.std())
            writer.write(start, (gain * clean + rng.normal(size=clean.shape)).astype(np.float32))
    return folder / ParticlesFolder.PARTICLES_STAR, folder / "map.mrc"


def _peak_rss_mb() -> float:
    """This process's peak RSS, or its largest finished child's if larger (loader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def cryojax_simulator(volume: np.ndarray, pixel_size: float, params, batch_size: int):
    """A function simulating cryoJAX's images of `params` (same map, poses and CTF), or None without cryojax.

    Conventions, checked against our images (r > 0.9999): cryoJAX's Euler angles are RELION's
    negated, its offset is minus rlnOriginX/YAngst, U−V is its astigmatism, and its contrast has
    the opposite sign to RELION's −sin γ, so its images are negated. Batches are padded to one
    shape so that XLA compiles once (the warm-up call).
    """
    if torch.get_num_threads() == 1:  # one core like relion_project; must be set before jax is imported
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    try:
        import jax
        import jax.numpy as jnp
        import cryojax.simulator as cxs
    except ImportError:
        return None
    box = volume.shape[-1]
    grid = cxs.FourierVoxelGridVolume.from_real_voxel_grid(jnp.asarray(volume), pad_scale=2.0)
    config = cxs.BasicImageConfig((box, box), pixel_size, float(params.voltage[0]), precompute_mode="rfft")

    def image(p):
        pose = cxs.EulerAnglePose(-p["origin_x_angst"], -p["origin_y_angst"], -p["rot"], -p["tilt"], -p["psi"])
        ctf = cxs.AstigmaticCTF(defocus_in_angstroms=(p["defocus_u"] + p["defocus_v"]) / 2,
                                astigmatism_in_angstroms=p["defocus_u"] - p["defocus_v"],
                                astigmatism_angle=p["defocus_angle"], spherical_aberration_in_mm=p["cs"])
        theory = cxs.ContrastTransferTheory(ctf, amplitude_contrast_ratio=p["amplitude_contrast"],
                                            phase_shift=p["phase_shift"])
        return -cxs.make_image_model(grid, config, pose, theory).simulate()

    batched = jax.jit(jax.vmap(image))
    names = ("origin_x_angst", "origin_y_angst", "rot", "tilt", "psi", "defocus_u", "defocus_v", "defocus_angle",
             "cs", "amplitude_contrast", "phase_shift")
    n = len(params.rot)

    def simulate_all() -> np.ndarray:
        images = []
        for start in range(0, n, batch_size):
            rows = np.minimum(np.arange(start, start + batch_size), n - 1)  # the last batch padded
            batch = {name: jnp.asarray(getattr(params, name)[rows], dtype=jnp.float32) for name in names}
            images.append(np.asarray(batched(batch))[: min(batch_size, n - start)])
        return np.concatenate(images)

    return simulate_all


def bench_simulate(n: int = 1000, box: int = 128, device: str = "cpu", batch_size: int = 128,
                   relion: bool = True, cryojax: bool = True, rounds: int = 5) -> SimulateBench:
    """The forward model, full `simulate`, `relion_project --ctf` and cryoJAX on the same particles, interleaved.

    Each round runs every contender once in turn (A B C D, A B C D, ...) and each rate is the
    median round's, so a busy machine's load falls on all of them alike. The images of
    relion_project and cryoJAX are correlated with ours: the rates compare the same work.
    """
    from cryorefine.simulate import SimulateConfig, simulate_pairs

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cryorefine-bench-") as tmp:
        folder = Path(tmp)
        star_path, map_path = synthetic_particles(folder, n, box)
        params = particle_parameters(read_particle_star(star_path))
        import mrcfile

        volume = mrcfile.read(map_path).astype(np.float32)
        model = ForwardModel(volume, 1.5, device=device)

        def forward() -> np.ndarray:
            images = [model.simulate(params.subset(slice(start, start + batch_size))) for start in range(0, n, batch_size)]
            _sync(device)
            return torch.cat(images).cpu().numpy()

        def pipeline() -> None:
            simulate_pairs(SimulateConfig(particles=star_path, map=map_path, out=folder / "pairs", device=device,
                                          batch_size=batch_size))

        def relion_project() -> None:
            subprocess.run(["relion_project", "--i", "map.mrc", "--ang", ParticlesFolder.PARTICLES_STAR,
                            "--o", "relion", "--ctf", "--angpix", "1.5"], cwd=folder, check=True, capture_output=True)

        contenders = {"forward": forward, "pipeline": pipeline}
        if relion and shutil.which("relion_project") is not None:
            contenders["relion_project"] = relion_project
        elif relion:
            log.warning("relion_project not found: no RELION comparison")
        simulate_cryojax = cryojax_simulator(volume, 1.5, params, batch_size) if cryojax else None
        if simulate_cryojax is not None:
            contenders["cryojax"] = simulate_cryojax
        elif cryojax:
            log.warning("cryojax not importable (pip install 'cryorefine[bench]'): no cryoJAX comparison")
        outputs = {name: run() for name, run in contenders.items()}  # warm-up (allocations, JIT, CUDA init)
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, run in contenders.items():
                started = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - started)
        ours = outputs["forward"]
        relion_r = cryojax_r = None
        if "relion_project" in contenders:
            relion_r = pearson_rows(torch.as_tensor(mrcfile.read(folder / "relion.mrcs")), torch.as_tensor(ours)).numpy()
        if "cryojax" in contenders:
            cryojax_r = pearson_rows(torch.as_tensor(outputs["cryojax"]), torch.as_tensor(ours)).numpy()
    rate = {name: n / float(np.median(times)) for name, times in seconds.items()}
    ratio = lambda a, b: round(rate[a] / rate[b], 2) if b in rate else None  # noqa: E731
    median = lambda r: None if r is None else round(float(np.median(r)), 5)  # noqa: E731
    return SimulateBench(
        particles=n, box=box, device=str(device), rounds=rounds, forward_per_s=round(rate["forward"], 1),
        pipeline_per_s=round(rate["pipeline"], 1),
        relion_project_per_s=round(rate["relion_project"], 1) if "relion_project" in rate else None,
        cryojax_per_s=round(rate["cryojax"], 1) if "cryojax" in rate else None,
        forward_vs_relion=ratio("forward", "relion_project"), pipeline_vs_relion=ratio("pipeline", "relion_project"),
        forward_vs_cryojax=ratio("forward", "cryojax"), relion_r_median=median(relion_r),
        cryojax_r_median=median(cryojax_r), cryojax_r_min=None if cryojax_r is None else round(float(cryojax_r.min()), 5),
        load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2), peak_rss_mb=round(_peak_rss_mb(), 1),
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
    from cryorefine.commands import apply as apply_command
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
        parser = argparse.ArgumentParser()
        apply_command.add_args(parser)
        args = parser.parse_args(["--model", str(folder / "model"), "--particles",
                                  str(folder / "pairs" / PairsFolder.SIM_STAR), "--out", str(folder / "applied"),
                                  "--batch-size", str(batch_size), "--device", str(torch_device)])
        started = time.perf_counter()
        apply_command.main(args)
        _sync(torch_device)
        rate = n / (time.perf_counter() - started)
    return ApplyBench(particles=n, box=box, batch_size=batch_size, device=str(torch_device),
                      images_per_s=round(rate, 1), peak_rss_mb=round(_peak_rss_mb(), 1))


def bench_translate(method: str = "contrastive", size: int = 1024, tile: int = 64, batch_size: int = 8,
                    steps: int = 20, device: str = "cpu", model: ModelConfig = ModelConfig(),
                    warmup: int = 2) -> TranslateBench:
    """A translator's training rate on tiles of blob micrographs against the bundled real micrograph,
    and the time to translate one `size`² micrograph (256-px windows, as `translate apply`)."""
    from cryorefine.demo import BUNDLE
    from cryorefine.device import resolve_device
    from cryorefine.training import TrainingLoop
    from cryorefine.unpaired.config import DiffusionConfig, UnpairedConfig
    from cryorefine.unpaired.data import real_micrograph
    from cryorefine.unpaired.diffusion import DiffusionTask
    from cryorefine.unpaired.methods import translate_micrograph
    from cryorefine.unpaired.train import ContrastiveTask

    torch_device = resolve_device(device)
    dose = 40.0 * 4.0**2  # 40 e/Å² at 4 Å/px
    clean, mask = blob_micrograph(size, dose)
    real = real_micrograph(BUNDLE / "micrograph_real.mrc", 4.0, 0.25)[0]
    if method == "diffusion":
        config = DiffusionConfig(model=model, tile=tile, batch_size=batch_size)
        task = DiffusionTask([clean], [real], config, torch_device)
    else:
        config = UnpairedConfig(model=model, tile=tile, batch_size=batch_size)
        task = ContrastiveTask([clean], [mask], [real], config, dose, torch_device)
    loop = TrainingLoop(task, None, warmup + steps, warmup + steps, warmup + steps, torch_device,
                        amp=torch_device.type == "cuda")
    batches = task.batches()
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)
    for _ in range(warmup):
        loop.take_step(next(batches))
    _sync(torch_device)
    started = time.perf_counter()
    for _ in range(steps):
        loop.take_step(next(batches))
    _sync(torch_device)
    rate = steps / (time.perf_counter() - started)
    translator = task.translator()
    started = time.perf_counter()
    translate_micrograph(translator, clean, mask, 256, 32, 0, dose, torch_device)
    _sync(torch_device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(torch_device) / 2**20 if torch_device.type == "cuda" else None
    return TranslateBench(method=method, tile=tile, batch_size=batch_size, device=str(torch_device),
                          steps_per_s=round(rate, 2), micrograph_px=size, translate_s=round(seconds, 2),
                          peak_gpu_mb=None if peak is None else round(peak, 1))


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
                                       stack_mb=round((folder / ParticlesFolder.PARTICLES_STACK).stat().st_size
                                                      / 2**20, 1)))
    return results


def as_row(result) -> dict:
    if result is None:
        raise CryorefineError("benchmark produced no result")
    return asdict(result)


def gpu_measurements(dry_run: bool = False):
    """Every GPU measurement of docs/benchmarks.md, as (what, result) pairs, yielded as each finishes.

    Simulation at 128 and 256 px against `relion_project --ctf` on one CPU core of the same
    machine; on-the-fly training at 256 px (bf16, channels-last; loader, simulation and D+G timed
    apart; MFU from counted FLOPs and the measured bf16 matmul rate; peak GPU memory) without and
    with torch.compile; apply throughput; both translators' training rate and the time to translate a
    4096² micrograph. Sized to finish in under 8 minutes on one H100. The dry
    run takes the same code paths on the CPU at tiny sizes, in seconds (torch.compile left out:
    its CPU compilation alone takes minutes).
    """
    if dry_run:
        device, small = "cpu", ModelConfig(base_channels=4, depth=2)
        yield "simulate", bench_simulate(n=16, box=24, device=device, batch_size=8, cryojax=False, rounds=1)
        yield "train", bench_train(n=40, box=24, batch_size=4, steps=1, device=device, num_workers=0, model=small, warmup=1)
        yield "apply", bench_apply(n=16, box=24, batch_size=8, device=device, model=small)
        for method in ("contrastive", "diffusion"):
            yield "translate", bench_translate(method, size=96, tile=32, batch_size=2, steps=1, device=device,
                                               model=small, warmup=1)
        return
    device = "cuda"
    for box, n in ((128, 2000), (256, 1000)):
        yield "simulate", bench_simulate(n=n, box=box, device=device, batch_size=256, cryojax=False, rounds=3)
    for compiled in (False, True):
        yield "train", bench_train(n=2000, box=256, batch_size=32, steps=30, device=device, num_workers=8,
                                   compile=compiled, warmup=5 if compiled else 2)
    yield "apply", bench_apply(n=2000, box=256, batch_size=64, device=device)
    for method, batch_size in (("contrastive", 8), ("diffusion", 16)):  # the experiment's batches (docs/scene.md)
        yield "translate", bench_translate(method, size=4096, tile=64, batch_size=batch_size, steps=50, device=device)
