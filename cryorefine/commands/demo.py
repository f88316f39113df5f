"""Run the whole pipeline on bundled data and write a one-page report (8.5 min on 2 idle CPU cores).

simulate pairs -> train -> apply (model and noise baselines) ->
generate -> evaluate, on TRPV1 projections carrying real micrograph noise; then a real-data check
of the simulator on 10 real TRPV1 particles. Writes OUT/report.md with its plots.

example:
  cryorefine demo --out demo_out
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryorefine.commands.options import add_device


def add_args(parser: argparse.ArgumentParser) -> None:
    from cryorefine.demo_settings import DATA_KINDS, DemoConfig

    defaults = DemoConfig(out=Path("demo_out"))
    parser.add_argument("--out", type=Path, default=defaults.out, help="output folder (default: demo_out)")
    parser.add_argument("--particles", type=int, default=defaults.particles,
                        help="demo particles, training and held-out together (default %(default)s)")
    parser.add_argument("--test-particles", type=int, default=defaults.test_particles,
                        help="of them, held out for the evaluation (default %(default)s)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="training steps")
    parser.add_argument("--snr", type=float, default=defaults.snr,
                        help="signal variance over noise variance of the demo particles (default %(default)s)")
    parser.add_argument("--data", choices=DATA_KINDS, default=defaults.data,
                        help="realistic: raw particles carry pose error, B-factor, ice-thickness contrast and noise "
                        "level; stationary: the earlier set, exact sim plus stationary noise (default: realistic)")
    parser.add_argument("--ablation", action="store_true",
                        help="also train the white-noise generator, and the default without RPSD and without the "
                        "pixel-histogram term (4x the training time)")
    parser.add_argument("--generate", type=int, default=defaults.generate, help="new particles to generate (0: none)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of every step (default %(default)s)")
    add_device(parser, defaults.device)


def main(args: argparse.Namespace) -> None:
    from cryorefine.demo import run_demo
    from cryorefine.demo_settings import DemoConfig

    run_demo(DemoConfig(out=args.out, particles=args.particles, test_particles=args.test_particles, snr=args.snr,
                        steps=args.steps, data=args.data, ablation=args.ablation, generate=args.generate, seed=args.seed,
                        device=args.device))
