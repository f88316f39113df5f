"""One rule for `--device` in every command: cpu, cuda, cuda:N, or auto (cuda when available)."""

from __future__ import annotations

import torch

from cryorefine.errors import InputError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(None, f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, f"--device {name} requested but no CUDA device is available")
    return device
