"""Atomic writes: a reader never sees a half-written output, and a failure leaves the old one."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from cryorefine.errors import OutputError

log = logging.getLogger(__name__)

STAGE_PREFIX = ".cryorefine-partial-"
# What the last published run wrote into an output folder: a rerun removes what it does not write
# again, and never touches a file it did not write (a user's own files beside the outputs stay).
OUTPUTS_MANIFEST = ".cryorefine-outputs.json"
# The end of every refusal to publish a broken result (a NaN, an all-constant stack).
NOT_PUBLISHED = "nothing was published and earlier outputs are left as they were"


def describe_os_error(exc: OSError) -> str:
    """A short reason for a failed write, in the words users search for."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno == errno.EFBIG:
        return "file too large (file size limit reached)"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return exc.strerror or str(exc)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; others (RELION, Scipion) must read it
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise OutputError(path, f"could not write ({describe_os_error(exc)}); earlier output left as it was") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _first_non_finite(value, where: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = _first_non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def write_json(path: Path, value) -> None:
    """JSON written atomically; a NaN or infinite number stops the run instead of being published."""
    bad = _first_non_finite(value)
    if bad is not None:
        raise OutputError(path, f"{bad} came out NaN or infinite; {NOT_PUBLISHED}")
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def refuse_output_over_inputs(out_dir: str | os.PathLike, option: str = "--out", files=(), folders=()) -> None:
    """Refuse an output folder that is an input file's folder or an input folder: a run there would
    replace or mix its results with what it reads. A folder inside an input folder is allowed (its
    own files never take the input's names)."""
    out = Path(out_dir).resolve()
    for path in files:
        if path is not None and Path(path).resolve().parent == out:
            raise OutputError(out_dir, f"{option} is the folder of the input {path}; choose a new folder")
    for path in folders:
        if path is not None and out == Path(path).resolve():
            raise OutputError(out_dir, f"{option} is the input folder {path}; choose a new folder")


class StagedOutputDir:
    """Build a command's outputs in a hidden staging folder, then publish them together.

    Files are moved into the output folder only when every one of them was written, so an
    interrupted or failed run leaves the folder as it was (no mixture of old and new files).
    Publishing replaces the earlier run's outputs whole: a file the earlier run wrote (listed in
    OUTPUTS_MANIFEST) that this run did not write is removed, so nothing stale survives beside
    the new result.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        if self.out_dir.is_symlink() and not self.out_dir.exists():
            raise OutputError(self.out_dir, "is a symbolic link that leads nowhere (broken, or a loop)")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise OutputError(self.out_dir, "exists and is not a directory")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.out_dir, f"cannot create the output folder ({describe_os_error(exc)})") from None
        for leftover in self.out_dir.glob(f"{STAGE_PREFIX}*"):
            log.warning("%s is left by an interrupted (or still running) run; it is never read, delete it once no run writes here", leftover)
        self._earlier = self._earlier_outputs()
        if self._earlier:
            log.info("%s holds an earlier result (%d files); it is replaced whole when this run succeeds",
                     self.out_dir, len(self._earlier))
        self.stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=self.out_dir))

    def _earlier_outputs(self) -> list[str]:
        try:
            names = json.loads((self.out_dir / OUTPUTS_MANIFEST).read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [n for n in names if isinstance(n, str) and not Path(n).is_absolute() and ".." not in Path(n).parts]

    def path(self, name: str) -> Path:
        target = self.stage / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def publish(self) -> None:
        written = sorted(str(p.relative_to(self.stage)) for p in self.stage.rglob("*") if p.is_file())
        try:
            for name in written:
                target = self.out_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.stage / name, target)
            for name in sorted(set(self._earlier) - set(written)):
                stale = self.out_dir / name
                if stale.is_file() and not stale.is_symlink():
                    stale.unlink()
                    if stale.parent != self.out_dir:
                        with contextlib.suppress(OSError):  # a folder only the earlier run used, now empty
                            stale.parent.rmdir()
            write_json(self.out_dir / OUTPUTS_MANIFEST, {"files": written})
        except OSError as exc:
            raise OutputError(self.out_dir, f"could not publish outputs ({describe_os_error(exc)})") from None
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self) -> "StagedOutputDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard()
