"""Fuzzing the STAR reader: any text, or a real file mangled, gives a valid ParticleStar or an InputError.

Hand-edited and truncated STAR files are common on shared clusters; whatever the bytes, the
reader must never crash with another exception (a traceback for the user) nor return a table
that later code would trip over.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _synthetic import varied_particles
from cryorefine.errors import InputError
from cryorefine.io.star import (
    ParticleStar,
    format_table,
    parse_image_name,
    particle_parameters,
    read_particle_star,
    write_particle_star,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_31_text() -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.star"
        write_particle_star(path, *varied_particles(4, 32, 1.5, seed=3))
        return path.read_text()


def _valid_30_text() -> str:
    """A RELION 3.0 file: one table, optics per particle, origins in pixels."""
    _, particles = varied_particles(3, 32, 1.5, seed=4)
    table = particles.drop(columns=["rlnOriginXAngst", "rlnOriginYAngst", "rlnOpticsGroup"]).assign(
        rlnOriginX=[1.0, -2.0, 0.5], rlnOriginY=[0.0, 1.0, 3.0], rlnVoltage=300.0, rlnSphericalAberration=2.7,
        rlnAmplitudeContrast=0.1, rlnDetectorPixelSize=5.0, rlnMagnification=33333.0)
    return format_table("", table)


SEEDS = [_valid_31_text(), _valid_30_text()]
STAR_WORDS = ["data_", "data_optics", "data_particles", "loop_", "_rlnImageName", "_rlnOpticsGroup", "_rlnDefocusU",
              "_rlnImagePixelSize", "#", "# version 30001", "nan", "inf", "-1", "0", "1e400", "@", "000001@x.mrcs",
              '"', "'", "\t", "\n", "\n\n", " ", "_rlnVoltage", "_rlnOriginX", "stop_", "global_", "save_"]


def _check(text: str | bytes) -> None:
    """The reader's contract: a usable ParticleStar, or InputError; nothing else."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.star"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            star = read_particle_star(path)
        except InputError as error:
            assert str(path) in str(error) or error.path is None
            return
        assert isinstance(star, ParticleStar) and len(star) > 0
        assert "rlnImageName" in star.particles and "rlnOpticsGroup" in star.particles
        pixel = pd.to_numeric(star.optics["rlnImagePixelSize"]).to_numpy(dtype=float)
        assert np.isfinite(pixel).all() and (pixel > 0).all()
        assert set(star.particles["rlnOpticsGroup"].astype(int)) <= set(star.optics["rlnOpticsGroup"].astype(int))
        try:
            params = particle_parameters(star, require_pose=False, require_ctf=False)
            assert all(len(values) == len(star) for values in params.__dict__.values())
            assert all(np.isfinite(values).all() for values in params.__dict__.values())
        except InputError:
            pass
        try:
            stacks, indices = parse_image_name(star)
            assert len(stacks) == len(indices) == len(star) and (indices >= 0).all()
        except InputError:
            pass


@FUZZ
@given(st.lists(st.sampled_from(STAR_WORDS) | st.text(max_size=6), max_size=80))
def test_arbitrary_text_gives_particles_or_input_error(pieces):
    _check("".join(pieces))


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_particles_or_input_error(data):
    _check(data)


@st.composite
def mangled_star(draw) -> str:
    """A real STAR file with a few edits: cuts, insertions, deleted or duplicated lines, swapped words."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "delete", "insert", "drop_line", "duplicate_line", "replace_word"]))
        at = draw(st.integers(0, len(text)))
        if kind == "truncate":
            text = text[:at]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif kind == "insert":
            text = text[:at] + draw(st.sampled_from(STAR_WORDS) | st.text(max_size=8)) + text[at:]
        else:
            lines = text.splitlines(keepends=True) or [""]
            i = draw(st.integers(0, len(lines) - 1))
            if kind == "drop_line":
                del lines[i]
            elif kind == "duplicate_line":
                lines.insert(i, lines[i])
            else:
                words = lines[i].split(" ")
                j = draw(st.integers(0, len(words) - 1))
                words[j] = draw(st.sampled_from(STAR_WORDS) | st.from_regex(r"-?[0-9]{0,3}\.?[0-9]{0,3}", fullmatch=True))
                lines[i] = " ".join(words)
            text = "".join(lines)
    return text


@FUZZ
@given(mangled_star())
def test_mangled_real_star_gives_particles_or_input_error(text):
    _check(text)


def test_repeated_optics_group_is_refused(tmp_path):
    """Found by fuzzing: a duplicated optics row used to give each particle several voltages."""
    lines = SEEDS[0].splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith("1 opticsGroup1"))
    lines.insert(row, lines[row].replace("300.000000", "200.000000"))
    (tmp_path / "a.star").write_text("".join(lines))
    with pytest.raises(InputError, match="optics group 1 is defined more than once"):
        read_particle_star(tmp_path / "a.star")


def test_seeds_are_valid_star_files():
    """The fuzzing starts from files the reader accepts (else it would only test rejection)."""
    with tempfile.TemporaryDirectory() as folder:
        for i, text in enumerate(SEEDS):
            path = Path(folder) / f"{i}.star"
            path.write_text(text)
            assert len(read_particle_star(path)) > 0


def test_a_nan_in_the_last_column_is_named_as_a_value_not_as_a_short_row(tmp_path):
    """Issue 16: a STAR whose last column held NaN was reported as 'row 1 has fewer values than the columns'."""
    path = tmp_path / "p.star"
    write_particle_star(path, *varied_particles(4, 32, 1.5, seed=3))
    lines = path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("000002@"))
    lines[row] = " ".join([*lines[row].split()[:-1], "nan"])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"column _\w+ has a non-numeric or non-finite value 'nan' \(row 2\)"):
        read_particle_star(path)
    lines[row] = " ".join(lines[row].split()[:-1])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="row 2 has fewer values than"):
        read_particle_star(path)
