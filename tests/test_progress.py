"""Progress off a terminal is plain log lines, a few of them, never carriage returns."""

from __future__ import annotations

import logging

from cryorefine import progress as progress_module
from cryorefine.progress import Progress, track


def test_off_a_terminal_progress_is_periodic_log_lines(caplog, monkeypatch):
    clock = iter(range(0, 1000, 5))  # 5 s per call of time.monotonic
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="cryorefine"):
        with Progress(10, "train", terminal=False, every_s=15) as bar:
            for _ in range(10):
                bar.update()
                bar.set_postfix(rpsd="0.1")
    lines = [r.getMessage() for r in caplog.records]
    assert 2 <= len(lines) <= 5  # every 15 s of a 50 s run, and the end
    assert lines[-1].startswith("train: 10/10 steps (100%)")
    assert "left" in lines[0] and "rpsd 0.1" in lines[0]
    assert not any("\r" in line for line in lines)


def test_track_yields_every_item_and_reports_the_end(caplog):
    with caplog.at_level(logging.INFO, logger="cryorefine"):
        assert list(track(range(3), "simulate")) == [0, 1, 2]
    assert caplog.records[-1].getMessage().startswith("simulate: 3/3 batches")
