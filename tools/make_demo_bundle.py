"""Build the demo bundle in cryorefine/data/demo from ../shared/data (run once by a maintainer).

- trpv1: the real consensus map and 10 real particles, copied as they are.
- micrograph_noise.mrc: the real EPU micrograph (4096², 0.667 Å/px) with its mean removed,
  Fourier-cropped to about the map's pixel size (560², 4.875 Å/px), as float32. The demo cuts
  background patches from it as the real ice and detector noise of its 'raw' particles.
- micrograph_real.mrc: the same micrograph with its mean kept (counts), Fourier-cropped to 682²
  at 4.003 Å/px: the real domain of the micrograph experiment and of the translate tests (the
  real-background baseline multiplies it, so the mean must stay).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import mrcfile
import numpy as np
import torch

from cryorefine.physics.imaging import fourier_resize

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data"
BUNDLE = REPO / "cryorefine" / "data" / "demo"
TARGET_BOX = 560
# 4096 px of 0.66655 Å Fourier-cropped to ~4 Å/px, the scenes' pixel size in the micrograph experiment.
REAL_BOX = 682


def main() -> None:
    BUNDLE.mkdir(parents=True, exist_ok=True)
    (BUNDLE / "trpv1").mkdir(exist_ok=True)
    for name in ("consensus_map.mrc", "particles.mrcs", "particles.star"):
        shutil.copyfile(SHARED / "trpv1" / name, BUNDLE / "trpv1" / name)
    with mrcfile.open(SHARED / "micrograph_epu" / "epu2.9_example.mrc", permissive=True) as handle:
        micrograph = np.asarray(handle.data, dtype=np.float32)
        pixel = float(handle.voxel_size.x)
    _write_cropped(BUNDLE / "micrograph_real.mrc", micrograph, pixel, REAL_BOX)
    _write_cropped(BUNDLE / "micrograph_noise.mrc", micrograph - micrograph.mean(), pixel, TARGET_BOX)


def _write_cropped(path: Path, micrograph: np.ndarray, pixel: float, box: int) -> None:
    cropped = fourier_resize(torch.from_numpy(micrograph)[None], box)[0].numpy()
    new_pixel = pixel * micrograph.shape[-1] / box
    with mrcfile.new(path, overwrite=True) as handle:
        handle.set_data(cropped.astype(np.float32))
        handle.voxel_size = new_pixel
    print(f"{path.name}: micrograph {micrograph.shape} at {pixel:.4f} Å -> {cropped.shape} at {new_pixel:.4f} Å")


if __name__ == "__main__":
    main()
