"""Benchmark simulate (side by side with `relion_project --ctf`), train and apply; print rates and memory.

Ratios measured in one run are what to quote from a CPU; absolute rates only from a GPU. Results are
printed as JSON lines and appended to --record if given.

example:
  cryorefine bench simulate --particles 1000 --box 128
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("simulate",), help="what to benchmark")
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--box", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-relion", action="store_true", help="skip the relion_project comparison")
    parser.add_argument("--record", type=Path, help="append the result as a JSON line to this file")


def main(args: argparse.Namespace) -> None:
    import torch

    from cryorefine.bench import as_row, bench_simulate

    result = bench_simulate(n=args.particles, box=args.box, device=args.device, batch_size=args.batch_size,
                            relion=not args.no_relion)
    row = {"what": args.what, **as_row(result), "torch_threads": torch.get_num_threads(),
           "machine": platform.processor() or platform.machine(), "command": " ".join(sys.argv)}
    line = json.dumps(row)
    sys.stdout.write(line + "\n")
    if args.record:
        with open(args.record, "a") as handle:
            handle.write(line + "\n")
