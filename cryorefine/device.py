"""One rule for `--device` in every command: cpu, cuda, cuda:N, or auto (cuda when available)."""

from __future__ import annotations

import torch

from cryorefine.errors import InputError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device for `--device NAME`; a bare `cuda` means this process's GPU under torchrun (LOCAL_RANK)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(None, f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(None, f"--device {name} requested but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
