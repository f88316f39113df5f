"""Shared test settings: paths to the bundled and the optional shared data, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CRYOREFINE_SHARED_DATA", REPO.parent / "shared" / "data"))
# Real data shipped with the package (sources and licences in its ATTRIBUTION.md): the tests' own
# source, so the adapter tests run on a fresh clone; ../shared/data only adds cases.
BUNDLE = REPO / "cryorefine" / "data" / "demo"
TRPV1 = BUNDLE / "trpv1"  # real TRPV1 map (48³, 4.88 Å) and 10 real particles with poses and CTF
REAL_MICROGRAPH = BUNDLE / "micrograph_real.mrc"  # one real micrograph, 682² at 4.003 Å/px, counts
REAL_MICROGRAPH_PIXEL = 4.0032
APOFERRITIN_CA = BUNDLE / "models" / "apoferritin_ca.pdb"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or a visible skip when the shared data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def run_in_process(*argv) -> None:
    """Run a subcommand in this process; errors propagate as exceptions (unlike `cli.main`)."""
    from cryorefine.cli import build_parser

    args = build_parser().parse_args([str(a) for a in argv])
    args.run(args)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `cryorefine ARGS` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "cryorefine.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)
