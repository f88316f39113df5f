"""The `cryorefine` command line: one module per subcommand under `cryorefine.commands`.

Each command module has a docstring (its help), `add_args(parser)` and `main(args)`. The command
modules import torch and the engine inside `main`, so that `--help` and argument errors answer
at once. Errors the user can fix are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from cryorefine import __version__
from cryorefine.commands.evaluate import upgrade_flag_form
from cryorefine.commands.options import check_every_number
from cryorefine.errors import CryorefineError
from cryorefine.threads import apply_threads

DESCRIPTION = """Make simulated cryo-EM particle images (and whole micrographs) look like real ones.

A typical run: simulate (sim/raw pairs from a refinement) -> train (the model) -> apply or generate
(realistic particles, with ground truth) -> evaluate (how close to real, against the baselines).
`cryorefine COMMAND --help` explains each command, with examples; `cryorefine demo` runs them all
on bundled data."""

COMMANDS = ("simulate", "train", "apply", "generate", "evaluate", "demo", "bench", "scene", "translate")

log = logging.getLogger("cryorefine")
OUT_OF_MEMORY = ("out of memory; lower --batch-size (or the box, micrograph or tile size); "
                 "nothing was published and earlier outputs are left as they were")


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line naming the option, like every other error (usage is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="cryorefine", description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cryorefine {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch (default: OMP_NUM_THREADS, else the cores this process may use "
                        "less those the machine's load keeps busy, at least 1; see cryorefine.threads)")
    for name in COMMANDS:
        module = importlib.import_module(f"cryorefine.commands.{name}")
        doc = (module.__doc__ or "").strip()
        sub = subparsers.add_parser(
            name,
            help=doc.splitlines()[0] if doc else name,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )
        module.add_args(sub)
        sub.set_defaults(run=module.main, command_parser=sub)
    check_every_number(parser)
    return parser


def main(argv: list[str] | None = None, choose_threads: bool = False) -> int:
    """Run one command. Torch's thread count is set from `--threads`, or by the automatic rule when
    `choose_threads` (the program entry point); a library caller keeps its own setting."""
    parser = build_parser()
    argv = upgrade_flag_form(list(sys.argv[1:] if argv is None else argv))
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # reported by the command's own parser, not the top-level one
            args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exit_:  # --help, or an argument error already printed as one line
        return exit_.code if isinstance(exit_.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    try:
        if args.threads is not None or choose_threads:
            choice = apply_threads(args.threads)
            log.debug("torch CPU threads: %d (%s; --threads N overrides)", choice.threads, choice.reason)
        args.run(args)
    except CryorefineError as exc:
        one_line = " ".join(str(exc).splitlines())  # a message quoting a parser's text may span lines
        print(f"cryorefine {args.command}: error: {one_line}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # torch's allocators raise RuntimeError (CUDA: OutOfMemoryError)
        if isinstance(exc, RuntimeError) and not any(words in str(exc) for words in ("out of memory",
                                                                                     "can't allocate memory")):
            raise
        print(f"cryorefine {args.command}: error: {OUT_OF_MEMORY}", file=sys.stderr)
        return 2
    except OSError as exc:
        problem = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"cryorefine {args.command}: error: {where}{problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cryorefine {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> int:
    """The `cryorefine` program."""
    return main(choose_threads=True)


if __name__ == "__main__":
    sys.exit(run())
