"""What the commands share on the command line: the range of every numeric option, checked when the command
line is parsed (before any work), --project-dir, and the help of a command's actions.

One table for all commands, by option name: a count is a whole number of at least 1, a weight a
finite number of at least 0, and so on. NaN, infinities, zero or negative counts and fractions
outside their interval get one line naming the option. `check_every_number` wraps each numeric
option's type with its rule; an option without a rule is a programming error (tested).
"""

from __future__ import annotations

import argparse
import math
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

from cryorefine.physics import ranges
from cryorefine.physics.ranges import Range


def _number(kind: type, text: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def _rule(kind: type, low: float | None = None, high: float | None = None, low_open: bool = False,
          high_open: bool = False, what: str = "") -> Callable[[str], float]:
    def check(text: str) -> float:
        value = _number(kind, text)
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {what}")
        return value

    check.__name__ = f"{kind.__name__} {what}"  # argparse names the type in some messages
    check.kind = kind
    return check


COUNT = _rule(int, 1, what="a whole number of at least 1")
NON_NEGATIVE_INT = _rule(int, 0, what="a whole number of at least 0")
SEED = _rule(int, 0, 2**32 - 1, what="a whole number from 0 to 2^32 - 1")
# No physical setting, weight or size of ours is near this; beyond it torch's float32 overflows.
LARGEST = 1e15
POSITIVE = _rule(float, 0, LARGEST, low_open=True, what=f"a number above 0 and at most {LARGEST:g}")
NON_NEGATIVE = _rule(float, 0, LARGEST, what=f"a number from 0 to {LARGEST:g}")
LEARNING_RATE = _rule(float, 0, 1, low_open=True, what="above 0 and at most 1")
OPEN_FRACTION = _rule(float, 0, 1, low_open=True, high_open=True, what="between 0 and 1 (both excluded)")
UNIT_INTERVAL = _rule(float, 0, 1, what="between 0 and 1")
START_LEVEL = _rule(float, 0, 1, low_open=True, what="above 0 and at most 1")


def _physical(accepted: Range, unit: str = "") -> Callable[[str], float]:
    """The rule of a quantity the STAR reader checks too, from the same table (cryorefine.physics.ranges)."""
    what = (f"at least {accepted.low:g} and below {accepted.high:g}" if accepted.high_open
            else f"from {accepted.low:g} to {accepted.high:g}{unit}")
    return _rule(float, accepted.low, accepted.high, high_open=accepted.high_open, what=what)


AMPLITUDE_CONTRAST = _physical(ranges.AMPLITUDE_CONTRAST)
VOLTAGE = _physical(ranges.VOLTAGE_KV, " kV")
SPHERICAL_ABERRATION = _physical(ranges.SPHERICAL_ABERRATION_MM, " mm")
BFACTOR = _physical(ranges.BFACTOR_A2, " Å²")
BOX = _rule(int, 16, 4096, what="a whole number of pixels from 16 to 4096")
TILE = _rule(int, 16, 8192, what="a whole number of pixels from 16 to 8192")
DEPTH = _rule(int, 1, 8, what="a whole number from 1 to 8")
WIDTH = _rule(int, 1, 1024, what="a whole number from 1 to 1024")

# Option destination -> rule. Options that share a name share a meaning across commands.
RULES: dict[str, Callable[[str], float]] = {
    "threads": COUNT, "seed": SEED, "batch_size": COUNT, "steps": COUNT, "particles": COUNT, "n": COUNT,
    "box": BOX, "pixel_size": POSITIVE, "map_pixel_size": POSITIVE, "bfactor": BFACTOR, "mask_diameter": POSITIVE,
    "max_particles": COUNT, "num_workers": NON_NEGATIVE_INT,
    "lr_generator": LEARNING_RATE, "lr_discriminator": LEARNING_RATE, "validation_fraction": OPEN_FRACTION,
    "log_every": COUNT, "checkpoint_every": COUNT, "physical_lr_factor": POSITIVE,
    "lambda_gan": NON_NEGATIVE, "lambda_l1": NON_NEGATIVE, "lambda_rpsd": NON_NEGATIVE,
    "lambda_histogram": NON_NEGATIVE, "lambda_nce": NON_NEGATIVE, "lambda_cycle": NON_NEGATIVE,
    "lambda_identity": NON_NEGATIVE, "lambda_structure": NON_NEGATIVE,
    "base_channels": WIDTH, "depth": DEPTH, "noise_channels": NON_NEGATIVE_INT,
    "max_images": COUNT, "classifier_steps": COUNT, "classifier_repeats": COUNT, "holdout": OPEN_FRACTION,
    "tile": TILE, "margin": NON_NEGATIVE_INT, "repeats": COUNT, "particle_diameter": POSITIVE,
    "test_particles": COUNT, "snr": POSITIVE, "generate": NON_NEGATIVE_INT, "sizes": COUNT, "rounds": COUNT,
    "size": TILE, "n_micrographs": COUNT, "min_separation": NON_NEGATIVE, "chain_length": COUNT,
    "band_radius": POSITIVE, "band_width": POSITIVE, "ice_thickness": NON_NEGATIVE,
    "ice_correlation_length": POSITIVE, "ice_roughness": NON_NEGATIVE, "ice_gradient": NON_NEGATIVE,
    "inelastic_mfp": POSITIVE, "defocus": POSITIVE, "astigmatism": NON_NEGATIVE, "voltage": VOLTAGE,
    "cs": SPHERICAL_ABERRATION, "amplitude_contrast": AMPLITUDE_CONTRAST, "dose": NON_NEGATIVE,
    "condition_sigma": POSITIVE, "sampling_steps": COUNT, "guidance": UNIT_INTERVAL, "start_level": START_LEVEL,
}


def numeric_actions(parser: argparse.ArgumentParser):
    """(prefix, action) for every int or float option of `parser` and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from numeric_actions(sub)
        elif action.type in (int, float) or hasattr(action.type, "kind"):
            yield parser.prog, action


def check_every_number(parser: argparse.ArgumentParser) -> None:
    """Give every numeric option of `parser` (and its subcommands) its rule from RULES."""
    for prog, action in numeric_actions(parser):
        if action.type in (int, float):
            rule = RULES.get(action.dest)
            if rule is None or rule.kind is not action.type:
                raise KeyError(f"{prog} {action.option_strings[-1]}: no {action.type.__name__} range rule in "
                               "cryorefine.commands.options")
            action.type = rule


def action_help(doc: str, command: str, action: str) -> str:
    """The --help of `cryorefine COMMAND ACTION`: the action's paragraph of the command's docstring (a line
    `  ACTION  text...`, ending at the next such line or a blank line) and the examples that use it."""
    paragraph = re.search(rf"^  {action}  (.*?)(?=^  \w+  |\n\n)", doc, re.MULTILINE | re.DOTALL).group(1)
    examples = [line for line in doc.split("Examples:")[1].splitlines() if f"{command} {action} " in line]
    return "\n".join([textwrap.fill(" ".join(paragraph.split()), 100), "", "Examples:", *examples])


def _existing_folder(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not an existing folder")
    return path


def add_device(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "auto") -> None:
    """--device, the same rule for every command (cryorefine.device.resolve_device)."""
    parser.add_argument("--device", default=default, help="cpu, cuda, cuda:N or auto (default: "
                        + ("cuda if available)" if default == "auto" else f"{default})"))


def add_amp(parser: argparse.ArgumentParser) -> None:
    """--no-amp for the commands that train: mixed precision is the GPU default."""
    parser.add_argument("--no-amp", action="store_true", help="full float32 on GPU (default: bf16/fp16 autocast)")


def add_project_dir(parser: argparse.ArgumentParser) -> None:
    """--project-dir, the same for every command that reads or writes particle STAR files."""
    parser.add_argument("--project-dir", type=_existing_folder, metavar="DIR",
                        help="RELION project folder (default: the current directory): image paths in STAR files are "
                        "read and written relative to it, as RELION reads them (absolute for outputs outside it)")
