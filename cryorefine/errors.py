"""Errors that the command line turns into one-line messages (exit status 2)."""

from __future__ import annotations

import os


class CryorefineError(Exception):
    """A problem the user can fix; shown as one line, never as a traceback."""


class InputError(CryorefineError):
    """Bad or unreadable input, reported with the file it concerns."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class SettingsError(InputError):
    """A setting (an option or a config value) that cannot work; the message names it, as no file is at
    fault. An InputError, so that callers catching bad input catch it too."""

    def __init__(self, problem: str):
        super().__init__(None, problem)


class OutputError(CryorefineError):
    """Output could not be written (disk full, permissions); earlier outputs are intact."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
