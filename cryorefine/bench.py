"""Benchmarks: throughput and memory of simulate (against `relion_project --ctf`), train and apply.

Figures are measured side by side in one run on the same machine; ratios are what to quote
from a CPU, absolute rates only from a GPU (see docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryorefine.errors import CryorefineError
from cryorefine.io.mrc import StackWriter, write_map
from cryorefine.io.star import particle_parameters, read_particle_star, write_particle_star
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


def synthetic_particles(folder: Path, n: int, box: int, pixel_size: float = 1.5, seed: int = 0) -> tuple[Path, Path]:
    """A random smooth map and n particles with random poses, origins and CTFs (and noise images)."""
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
    particles = pd.DataFrame({
        "rlnImageName": [f"{i + 1:06d}@particles.mrcs" for i in range(n)],
        "rlnAngleRot": rng.uniform(-180, 180, n), "rlnAngleTilt": np.degrees(np.arccos(rng.uniform(-1, 1, n))),
        "rlnAnglePsi": rng.uniform(-180, 180, n), "rlnOriginXAngst": rng.uniform(-5, 5, n),
        "rlnOriginYAngst": rng.uniform(-5, 5, n), "rlnDefocusU": defocus, "rlnDefocusV": defocus - rng.uniform(-800, 800, n),
        "rlnDefocusAngle": rng.uniform(0, 180, n), "rlnOpticsGroup": np.ones(n, dtype=int),
    })
    with StackWriter(folder / "particles.mrcs", n, box, pixel_size) as writer:
        for start in range(0, n, 256):
            count = min(256, n - start)
            writer.write(start, rng.normal(size=(count, box, box)).astype(np.float32))
    write_particle_star(folder / "particles.star", optics, particles)
    return folder / "particles.star", folder / "map.mrc"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def as_row(result) -> dict:
    if result is None:
        raise CryorefineError("benchmark produced no result")
    return asdict(result)
