"""The command line as a user meets it: every command has help, errors are one line with exit 2."""

from __future__ import annotations

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


def test_user_error_is_one_line_with_status_2(tmp_path):
    result = run_cli("simulate", "--particles", tmp_path / "missing.star", "--map", tmp_path / "m.mrc", "--out", tmp_path / "o")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"cryorefine simulate: error: {tmp_path / 'missing.star'}: file not found"]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_in_process_call_returns_status(tmp_path):
    assert main(["simulate", "--particles", str(tmp_path / "x.star"), "--map", "m", "--out", str(tmp_path / "o"),
                 "--batch-size", "0"]) == 2
