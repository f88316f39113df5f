"""One rule for `--device` in every command: cpu, cuda, cuda:N, or auto (cuda when available).

Torch-free at import, so the adapters (Scipion's GUI, the RELION wrapper) can ask `host_has_cuda`
without loading torch."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from cryorefine.errors import SettingsError

if TYPE_CHECKING:
    import torch

NO_GPU_REASON = "this machine has no NVIDIA GPU driver (no /proc/driver/nvidia, no nvidia-smi)"


def host_has_cuda() -> bool:
    """Whether this machine has an NVIDIA driver: what both adapters decide a GPU default and a GPU refusal by."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device for `--device NAME`; a bare `cuda` means this process's GPU under torchrun (LOCAL_RANK)."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingsError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(f"--device {name} requested but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
