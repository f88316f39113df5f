"""MRC maps and particle stacks: memory-mapped reads in batches, chunked writes."""

from __future__ import annotations

import errno
import logging
import math
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import mrcfile
import numpy as np

from cryorefine.errors import InputError, OutputError
from cryorefine.io.atomic import NOT_PUBLISHED, describe_os_error
from cryorefine.io.star import ParticleStar, StackLocation, locate_stack, parse_image_name

log = logging.getLogger(__name__)

# Larger pixel values are a unit or format slip; squaring them (for a variance) overflows float32.
MAX_PIXEL_MAGNITUDE = 1e15


def _refuse_degenerate(path: Path, data: np.ndarray, what: str) -> None:
    """Refuse what no detector or map gives: values beyond MAX_PIXEL_MAGNITUDE, or one value throughout."""
    peak = float(np.abs(data).max())
    if peak > MAX_PIXEL_MAGNITUDE:
        raise InputError(path, f"{what} has values up to {peak:.3g}, beyond {MAX_PIXEL_MAGNITUDE:g}: absurdly scaled")
    if data.min() == data.max():
        raise InputError(path, f"{what} is constant ({float(data.flat[0]):g} everywhere): blank or damaged")


def _open_mmap(path: Path):
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, expected an MRC file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            handle = mrcfile.mmap(path, mode="r", permissive=True)
        except Exception as exc:
            raise InputError(path, f"unreadable MRC file ({exc})") from None
    if handle.data is None:  # permissive mode reads a bad header or short data block as no data
        handle.close()
        reasons = "; ".join(dict.fromkeys(str(w.message) for w in caught)) or "no data block"
        raise InputError(path, f"unreadable MRC file, truncated or corrupt ({reasons})")
    return handle


def read_map(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a cubic 3D map (z, y, x) as float32 with its voxel size in Å."""
    path = Path(path)
    handle = _open_mmap(path)
    with handle:
        if handle.data is None or handle.data.size == 0:
            raise InputError(path, "map is empty (zero size)")
        data = np.asarray(handle.data, dtype=np.float32).copy()
        voxel = float(handle.voxel_size.x)
    if data.ndim != 3:
        raise InputError(path, f"expected a 3D map, got shape {data.shape}")
    if len(set(data.shape)) != 1:
        raise InputError(path, f"map must be cubic, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise InputError(path, "map contains NaN or Inf values")
    _refuse_degenerate(path, data, "map")
    return data, voxel


def read_voxel_size(path: str | os.PathLike) -> float:
    """A map's voxel size in Å from its header alone (no data read); refuses a header without one.

    As its shortest decimal (4.88, not float32's 4.8800001): a default taken from it then equals the same
    value typed on the command line."""
    path = Path(path)
    with _open_mmap(path) as handle:
        voxel = float(str(np.float32(handle.voxel_size.x)))
    if not (math.isfinite(voxel) and voxel > 0):
        raise InputError(path, f"map header has no usable voxel size ({voxel:g} Å)")
    return voxel


def read_micrograph(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read one 2D image (y, x) as float32 with its pixel size in Å."""
    path = Path(path)
    with _open_mmap(path) as handle:
        data = np.asarray(handle.data, dtype=np.float32).copy()
        pixel = float(handle.voxel_size.x)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise InputError(path, f"expected one 2D micrograph, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise InputError(path, "contains NaN or infinite values")
    return data, pixel


def read_stack(path: str | os.PathLike) -> np.ndarray:
    """Read a whole (small) stack as float32 (n, y, x)."""
    path = Path(path)
    with _open_mmap(path) as handle:
        data = np.asarray(handle.data, dtype=np.float32).copy()
    return data[None] if data.ndim == 2 else data


def _positioned_read(handle, index: int) -> np.ndarray:
    """Image `index` of an open stack by pread, not by slicing its memory map.

    Slicing maps the page cache around each image into the process (whole folios), so random
    reads over a training run would grow its RSS towards the stack's size; pread copies one image.
    """
    data = handle.data
    shape = data.shape[-2:]
    image_bytes = data.dtype.itemsize * shape[0] * shape[1]
    offset = 1024 + int(handle.header.nsymbt) + index * image_bytes  # main header, extended header, images
    buffer = os.pread(handle._iostream.fileno(), image_bytes, offset)
    if len(buffer) != image_bytes:
        raise InputError(Path(handle._iostream.name), f"image {index + 1} is truncated")
    return np.frombuffer(buffer, dtype=data.dtype).reshape(shape)


class ParticleImages:
    """Lazy access to the images a STAR file names, possibly spread over many stacks.

    Stacks are memory-mapped and a small number kept open, so memory does not grow
    with the number of particles.
    """

    def __init__(self, star: ParticleStar, project_dir: str | os.PathLike | None = None, max_open: int = 16):
        self.star = star
        self.project_dir = Path(project_dir) if project_dir else None
        names, self.indices = parse_image_name(star)
        self._stack_of_name: dict[str, StackLocation] = {}
        self.stack_paths = np.array([self._resolve(name) for name in names], dtype=object)
        self._say_how_stacks_were_found()
        self._open: OrderedDict[Path, object] = OrderedDict()
        self.max_open = max_open
        first = self._handle(self.stack_paths[0])
        shape = first.data.shape
        self.box = int(shape[-1])
        if shape[-1] != shape[-2]:
            raise InputError(self.stack_paths[0], f"images must be square, got {shape[-2]}x{shape[-1]}")

    def _resolve(self, name: str) -> Path:
        if name not in self._stack_of_name:
            self._stack_of_name[name] = locate_stack(name, self.star.path, self.project_dir)
        return self._stack_of_name[name].path

    def _say_how_stacks_were_found(self) -> None:
        """One line when a stack was not taken by RELION's rule, or when another file of the same name exists."""
        found = self._stack_of_name
        where = f"the project folder {self.project_dir}" if self.project_dir else "the current directory"
        ambiguous = [location for location in found.values() if location.other is not None]
        if ambiguous:
            log.warning("%s: %d image stack name(s) match two files; took the one RELION reads, relative to %s "
                        "(e.g. %s, not %s)", self.star.path, len(ambiguous), where, ambiguous[0].path,
                        ambiguous[0].other)
        beside = [location for location in found.values() if not location.relion_rule]
        if beside:
            log.info("%s: %d of %d image stacks found relative to the STAR file's folder (or one above it), "
                     "not to %s as RELION reads them (e.g. %s)", self.star.path, len(beside), len(found), where,
                     beside[0].path)

    def _handle(self, path: Path):
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        handle = _open_mmap(path)
        if handle.data is None or handle.data.size == 0:
            raise InputError(path, "stack is empty")
        self._open[path] = handle
        if len(self._open) > self.max_open:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        return handle

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Images for the given particle rows, float32 (len(rows), box, box)."""
        out = np.empty((len(rows), self.box, self.box), dtype=np.float32)
        for k, row in enumerate(rows):
            path = self.stack_paths[row]
            handle = self._handle(path)
            data = handle.data
            stack = data[None] if data.ndim == 2 else data
            index = self.indices[row]
            if index >= stack.shape[0]:
                raise InputError(path, f"image {index + 1} requested (particle {row + 1}) but the stack has {stack.shape[0]}")
            if stack.shape[-1] != self.box or stack.shape[-2] != self.box:
                raise InputError(path, f"box {stack.shape[-1]} differs from {self.box} in the first stack")
            image = _positioned_read(handle, index)
            if not np.isfinite(image).all():
                raise InputError(path, f"image {index + 1} (particle {row + 1}) contains NaN or Inf")
            _refuse_degenerate(path, image, f"image {index + 1} (particle {row + 1})")
            out[k] = image
        return out

    def close(self) -> None:
        for handle in self._open.values():
            handle.close()
        self._open.clear()

    def __getstate__(self) -> dict:
        """Pickled (e.g. into a spawned loader worker) without open handles: they reopen on first read."""
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state


def _reserve_disk_space(path: Path) -> None:
    """Allocate the whole (sparse) file now, so a full disk or a size limit fails here with a clear
    error, instead of killing the process with SIGBUS when a memory-mapped page is written later."""
    size = path.stat().st_size
    try:
        with open(path, "r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OutputError(path, f"cannot write the {size / 1e6:.1f} MB stack ({describe_os_error(exc)}); "
                              "earlier outputs left as they were") from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without preallocation: write as usual
            raise


class StackWriter:
    """Write an (n, box, box) float32 stack in chunks to a memory-mapped MRC file.

    The header's statistics are accumulated chunk by chunk as images are written (mrcfile's
    update_header_stats re-reads the whole stack at close, a tenth of `simulate`'s time at 128 px).
    """

    def __init__(self, path: str | os.PathLike, n: int, box: int, pixel_size: float):
        self.path = Path(path)
        try:
            self.handle = mrcfile.new_mmap(self.path, shape=(n, box, box), mrc_mode=2, overwrite=True)
        except OSError as exc:
            raise OutputError(self.path, f"could not create the stack ({describe_os_error(exc)}); "
                              "earlier outputs left as they were") from None
        self.handle.voxel_size = pixel_size
        self.handle.set_image_stack()
        self._chunk_stats: dict[int, tuple[float, float, int, float, float]] = {}
        try:
            _reserve_disk_space(self.path)
        except OutputError:
            self.handle.close()
            raise

    def write(self, start: int, images: np.ndarray) -> None:
        """Images from row `start` on; a non-finite value stops the run, so nothing broken is published."""
        images = np.asarray(images)
        finite = np.isfinite(images.reshape(len(images), -1)).all(1)
        if not finite.all():
            raise OutputError(self.path, f"image {start + int(np.flatnonzero(~finite)[0]) + 1} came out with NaN or "
                              f"Inf values; {NOT_PUBLISHED}")
        self.handle.data[start : start + len(images)] = images
        self._chunk_stats[start] = _chunk_statistics(images)

    def scale_rows(self, scales: np.ndarray, chunk: int = 1024) -> None:
        """Multiply image i by scales[i] in place (sim put on raw's intensity scale after the fit)."""
        data = self.handle.data
        self._chunk_stats.clear()
        for start in range(0, len(data), chunk):
            data[start : start + chunk] *= scales[start : start + chunk, None, None]
            self._chunk_stats[start] = _chunk_statistics(data[start : start + chunk])

    def _set_header_statistics(self) -> None:
        """dmin, dmax, dmean and rms (the standard deviation) from the chunks' (Chan et al.'s pairwise combination)."""
        header = self.handle.header
        chunks = list(self._chunk_stats.values())
        if not chunks or sum(c[2] for c in chunks) != self.handle.data.size:  # not every image written: read them back
            self.handle.update_header_stats()
            return
        count = np.array([c[2] for c in chunks], dtype=np.float64)
        means = np.array([c[3] for c in chunks])
        total = count.sum()
        mean = float((count * means).sum() / total)
        squares = sum(c[4] for c in chunks) + float((count * (means - mean) ** 2).sum())
        header.dmin, header.dmax = min(c[0] for c in chunks), max(c[1] for c in chunks)
        header.dmean, header.rms = mean, np.sqrt(squares / total)

    def close(self, check: bool = False) -> None:
        """Flush and close; with `check`, refuse a stack that is one constant value throughout."""
        self._set_header_statistics()
        degenerate = check and len(self.handle.data) > 0 and self.handle.header.dmin == self.handle.header.dmax
        value = float(self.handle.header.dmin)
        self.handle.flush()
        self.handle.close()
        if degenerate:
            raise OutputError(self.path, f"every image came out as the constant {value:g}; {NOT_PUBLISHED}")

    def __enter__(self) -> "StackWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(check=exc_type is None)


def _chunk_statistics(images: np.ndarray) -> tuple[float, float, int, float, float]:
    """(min, max, count, mean, sum of squared deviations from the mean) of a chunk, in float64."""
    flat = images.reshape(-1)
    mean = float(flat.mean(dtype=np.float64))
    deviations = flat - np.float32(mean)
    return float(flat.min()), float(flat.max()), flat.size, mean, float(np.dot(deviations, deviations))


def write_map(path: str | os.PathLike, volume: np.ndarray, voxel_size: float) -> None:
    """An MRC map or micrograph; a NaN or infinite value stops the run instead of being published."""
    if not np.isfinite(volume).all():
        raise OutputError(path, f"came out with NaN or Inf values; {NOT_PUBLISHED}")
    try:
        with mrcfile.new(path, overwrite=True) as handle:
            handle.set_data(np.asarray(volume, dtype=np.float32))
            handle.voxel_size = voxel_size
    except OSError as exc:  # mrcfile's flush names no file: a full disk would be a bare "No space left"
        raise OutputError(path, f"could not write ({describe_os_error(exc)}); {NOT_PUBLISHED}") from None
