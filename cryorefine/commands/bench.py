"""Benchmark simulate (side by side with `relion_project --ctf`), train, apply and memory; print rates and memory.

Ratios measured in one run are what to quote from a CPU; absolute rates only from a GPU. Results are
printed as JSON lines and appended to --record if given.

  simulate  forward model and full `simulate` vs relion_project --ctf (particles/s)
  train     on-the-fly training: images/s, simulation time over step time, FLOPs/step, MFU on CUDA
  apply     `cryorefine apply` end to end (images/s)
  memory    peak RSS of on-the-fly training for each --sizes data set, each in a fresh process
  gpu       every GPU measurement of docs/benchmarks.md in one run (under 8 minutes on one H100);
            --dry-run takes the same paths on the CPU at tiny sizes, in seconds

examples:
  cryorefine bench simulate --particles 1000 --box 128 --threads 1
  cryorefine bench train --particles 2000 --box 256 --batch-size 32 --device cuda --num-workers 8
  cryorefine bench memory --sizes 1000 10000 100000 --box 32
  cryorefine bench gpu --record gpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from pathlib import Path

from cryorefine.commands.options import add_device

log = logging.getLogger(__name__)

_DEFAULT_BATCH = {"simulate": 128, "train": 16, "apply": 64, "memory": 16}
_WHAT = (*_DEFAULT_BATCH, "gpu")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=_WHAT, help="what to benchmark")
    parser.add_argument("--particles", type=int, default=1000, help="particles (or training set size) to time (default 1000)")
    parser.add_argument("--box", type=int, help="box in pixels (default: 128 for simulate, 64 train/apply, 32 memory)")
    parser.add_argument("--batch-size", type=int, help="default: simulate 128, train 16, apply 64, memory 16")
    add_device(parser, "cpu")
    parser.add_argument("--no-relion", action="store_true", help="simulate: skip the relion_project comparison")
    parser.add_argument("--no-cryojax", action="store_true", help="simulate: skip the cryoJAX comparison")
    parser.add_argument("--rounds", type=int, default=5, help="simulate: interleaved rounds (the median is kept)")
    parser.add_argument("--dry-run", action="store_true", help="gpu: the same code paths on the CPU at tiny sizes")
    parser.add_argument("--steps", type=int, default=20, help="train/memory: timed training steps")
    parser.add_argument("--num-workers", type=int, default=2, help="train/memory: loader processes")
    parser.add_argument("--compile", action="store_true", help="train: torch.compile the models")
    parser.add_argument("--base-channels", type=int, help="train/apply: generator width (default: the model default)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000],
                        help="memory: data set sizes, one fresh training process each")
    parser.add_argument("--record", type=Path, help="append the results as JSON lines to this file")


def _results(args: argparse.Namespace):
    """(what, result) pairs, yielded as each measurement finishes."""
    from dataclasses import replace

    from cryorefine import bench
    from cryorefine.gan.config import ModelConfig

    if args.what == "gpu":
        yield from bench.gpu_measurements(dry_run=args.dry_run)
        return
    batch = args.batch_size or _DEFAULT_BATCH[args.what]
    model = ModelConfig() if args.base_channels is None else replace(ModelConfig(), base_channels=args.base_channels)
    if args.what == "simulate":
        yield args.what, bench.bench_simulate(n=args.particles, box=args.box or 128, device=args.device,
                                              batch_size=batch, relion=not args.no_relion,
                                              cryojax=not args.no_cryojax, rounds=args.rounds)
    elif args.what == "train":
        yield args.what, bench.bench_train(n=args.particles, box=args.box or 64, batch_size=batch, steps=args.steps,
                                           device=args.device, num_workers=args.num_workers, compile=args.compile,
                                           model=model)
    elif args.what == "apply":
        yield args.what, bench.bench_apply(n=args.particles, box=args.box or 64, batch_size=batch,
                                           device=args.device, model=model)
    else:
        for result in bench.bench_memory(tuple(args.sizes), box=args.box or 32, steps=args.steps,
                                         batch_size=batch, num_workers=args.num_workers):
            yield args.what, result


def main(args: argparse.Namespace) -> None:
    import torch

    from cryorefine.bench import as_row

    for what, result in _results(args):
        row = {"what": what, **as_row(result), "torch_threads": torch.get_num_threads(),
               "load_average_1min": round(os.getloadavg()[0], 2),
               "machine": platform.processor() or platform.machine(), "command": " ".join(sys.argv)}
        line = json.dumps(row)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()  # each line as it is measured: a run cut short keeps what it finished
        if args.record:
            with open(args.record, "a") as handle:
                handle.write(line + "\n")
