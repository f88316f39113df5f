"""Shared test settings: paths to the bundled and the optional shared data, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Real data shipped with the package (sources and licences in its ATTRIBUTION.md): the tests' own
# source, so every test runs on a fresh clone without ../shared/data.
BUNDLE = REPO / "cryorefine" / "data" / "demo"
TRPV1 = BUNDLE / "trpv1"  # real TRPV1 map (48³, 4.88 Å) and 10 real particles with poses and CTF
REAL_MICROGRAPH = BUNDLE / "micrograph_real.mrc"  # one real micrograph, 682² at 4.003 Å/px, counts
REAL_MICROGRAPH_PIXEL = 4.0032
APOFERRITIN_CA = BUNDLE / "models" / "apoferritin_ca.pdb"
TEST_DATA = REPO / "tests" / "data"  # small fixtures for the tests only (tests/data/ATTRIBUTION.md)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def run_in_process(*argv) -> None:
    """Run a subcommand in this process; errors propagate as exceptions (unlike `cli.main`)."""
    from cryorefine.cli import build_parser

    args = build_parser().parse_args([str(a) for a in argv])
    args.run(args)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `cryorefine ARGS` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "cryorefine.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


@pytest.fixture(scope="session")
def tiny_scenes(tmp_path_factory) -> Path:
    """Two 128-px scene micrographs of 8 TRPV1 at 8 Å/px and 40 e/Å²: enough to train a translator a few steps."""
    from cryorefine import cli

    folder = tmp_path_factory.mktemp("tiny_scenes") / "scenes"
    assert cli.main(["scene", "--species", f"{TRPV1 / 'consensus_map.mrc'}:8", "--size", "128", "--pixel-size", "8",
                     "--dose", "40", "--n-micrographs", "2", "--out", str(folder)]) == 0
    return folder
