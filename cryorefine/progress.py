"""Progress of every long step: a tqdm bar on a terminal, a log line every so often elsewhere.

Logs of cluster jobs, RELION's run.out and Scipion's run.stdout are files: there tqdm's carriage
returns pile up into one line of thousands of characters, so off a terminal progress is a plain
INFO line at most every `LINE_EVERY_S` seconds, and one when the step ends.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

log = logging.getLogger("cryorefine")

LINE_EVERY_S = 15.0
T = TypeVar("T")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class Progress:
    """Counts work done out of `total`; `update` as it goes, `close` (or `with`) at the end."""

    def __init__(self, total: int, desc: str, unit: str = "step", initial: int = 0, disable: bool = False,
                 every_s: float = LINE_EVERY_S, terminal: bool | None = None):
        self.total, self.desc, self.unit, self.done = total, desc, unit, initial
        self.disable, self.every_s = disable, every_s
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._initial = initial
        self._closed = False
        self._bar = None
        terminal = sys.stderr.isatty() if terminal is None else terminal
        if terminal and not disable:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif not self.disable and time.monotonic() - self._last >= self.every_s and self.done < self.total:
            self._line()

    def set_postfix(self, **values: str) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def _line(self) -> None:
        now = time.monotonic()
        self._last = now
        elapsed = now - self._start
        rate = (self.done - self._initial) / elapsed if elapsed > 0 else 0.0
        units = self.unit + ("es" if self.unit.endswith(("s", "h", "x")) else "s")
        text = f"{self.desc}: {self.done}/{self.total} {units} ({100 * self.done / max(self.total, 1):.0f}%), {_duration(elapsed)}"
        if 0 < self.done < self.total and rate > 0:
            text += f", about {_duration((self.total - self.done) / rate)} left"
        if self.postfix:
            text += f"; {self.postfix}"
        log.info(text)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif not self.disable and self.done > self._initial:
            self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], desc: str, unit: str = "batch", total: int | None = None) -> Iterator[T]:
    """Iterate `items`, reporting progress as `Progress` does."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    with Progress(len(items) if total is None else total, desc, unit) as progress:
        for item in items:
            yield item
            progress.update()
