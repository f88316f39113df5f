"""The command line as a user meets it: every command has help, errors are one line with exit 2."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from cryorefine.cli import COMMANDS, build_parser, main
from tests.conftest import run_cli


def test_every_command_is_registered_with_help(capsys):
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert "example" in capsys.readouterr().out.lower(), name


@pytest.mark.parametrize("action", ["train", "apply"])
def test_translate_actions_have_help_with_examples(action, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["translate", action, "--help"])
    text = capsys.readouterr().out
    assert "Examples:" in text and f"cryorefine translate {action} --" in text


def test_train_options_are_explained_not_named(capsys):
    """Each option's help says what it does, not its own name again ("lambda gan", "log every")."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for named in ("lambda gan (", "log every (", "seed (default", "batch size (", "depth (default"):
        assert named not in text, named


def test_every_option_of_every_command_has_help():
    def undocumented(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from undocumented(sub, f"{prefix} {name}")
            elif action.option_strings and not action.help:
                yield f"{prefix} {action.option_strings[-1]}"

    assert list(undocumented(build_parser(), "cryorefine")) == []


@pytest.mark.parametrize("argv, command", [
    (["simulate", "--particles", "a", "--map", "b", "--out", "c", "--pixelsize", "2"], "simulate"),
    (["translate", "apply", "--baseline", "gaussian", "--scenes", "s", "--out", "o", "--bogus"], "translate apply"),
])
def test_an_unknown_option_is_one_line_naming_the_command(argv, command, tmp_path):
    result = run_cli(*argv, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cryorefine {command}: error: unrecognized arguments: --") and ("--pixelsize" in last
                                                                                          or "--bogus" in last)
    assert len(result.stderr.strip().splitlines()) == 1 and f"(see cryorefine {command} --help)" in last


def test_user_error_is_one_line_with_status_2(tmp_path):
    result = run_cli("simulate", "--particles", tmp_path / "missing.star", "--map", tmp_path / "m.mrc", "--out", tmp_path / "o")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"cryorefine simulate: error: {tmp_path / 'missing.star'}: file not found"]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_in_process_call_returns_status(tmp_path):
    assert main(["simulate", "--particles", str(tmp_path / "x.star"), "--map", "m", "--out", str(tmp_path / "o"),
                 "--batch-size", "0"]) == 2


def test_help_and_argument_errors_load_neither_torch_nor_pandas_nor_matplotlib():
    """A bad flag answers at once: building every command's parser imports no heavy library."""
    code = ("import sys; from cryorefine import cli; cli.build_parser(); "
            "print([m for m in ('torch', 'pandas', 'matplotlib', 'scipy') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    bogus = subprocess.run([sys.executable, "-m", "cryorefine.cli", "simulate", "--particles", "p.star", "--map",
                            "m.mrc", "--out", "o", "--bogus"], capture_output=True, text=True)
    assert bogus.returncode == 2 and "cryorefine simulate: error: unrecognized arguments: --bogus" in bogus.stderr


def test_threads_option_is_checked_and_applied(tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["simulate", "--particles", "p.star", "--map", "m.mrc", "--out", str(tmp_path), "--threads",
                     "0"]) == 2
        main(["simulate", "--particles", str(tmp_path / "missing.star"), "--map", "m.mrc", "--out",
              str(tmp_path / "out"), "--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
