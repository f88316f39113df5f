"""Property-based: whatever the numbers (NaN, ±inf, 0, negatives, huge), a command either succeeds
with finite output or refuses with one line, exit status 2, and the earlier output byte for byte."""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryorefine.synthetic import blob_map
from _synthetic import varied_particles, write_dataset
from cryorefine import cli
from cryorefine.commands.options import numeric_actions
from cryorefine.io.star import read_particle_star, write_particle_star

# numpy's overflow notices for the extreme values drawn here are expected; the assertions judge the outcome.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# Numbers as a user could type them: every float and int, and the words of a typo.
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-2**70, 2**70).map(str),
    st.sampled_from(["nan", "inf", "-inf", "0", "-0", "-1", "1e308", "1e-308", "1.5", "abc", "", "2**3"]),
)
# The arguments each command needs besides the option under test (never read: parsing stops first
# or the option's value is all that is checked).
REQUIRED = {
    "simulate": ["--particles", "p.star", "--map", "m.mrc", "--out", "o"],
    "train": ["--pairs", "p", "--out", "o"],
    "apply": ["--model", "m", "--particles", "p.star", "--out", "o"],
    "generate": ["--model", "m", "--map", "m.mrc", "--like", "l.star", "--n", "4", "--out", "o"],
    "evaluate": ["particles", "--fake", "f.star", "--raw", "r.star", "--out", "o"],
    "evaluate particles": ["--fake", "f.star", "--raw", "r.star", "--out", "o"],
    "evaluate micrographs": ["--sets", "a=b", "--real", "r.mrc", "--out", "o"],
    "evaluate denoising": ["--train", "a=b.star", "--clean", "c.star", "--raw", "r.star", "--sim", "s.star", "--out", "o"],
    "evaluate picking": ["--train", "a=b", "--test", "t", "--particle-diameter", "100", "--out", "o"],
    "demo": [], "bench": ["simulate"], "scene": ["--species", "s.mrc", "--out", "o"],
    "translate": ["apply", "--baseline", "gaussian", "--scenes", "s", "--out", "o"],
    "translate train": ["--scenes", "s", "--real", "r.mrc", "--out", "o"],
    "translate apply": ["--baseline", "gaussian", "--scenes", "s", "--out", "o"],
}
NUMERIC_OPTIONS = sorted({(prog.removeprefix("cryorefine "), action.option_strings[-1])
                          for prog, action in numeric_actions(cli.build_parser())})


def test_every_numeric_option_is_covered():
    commands = {command for command, _ in NUMERIC_OPTIONS}
    assert commands == set(REQUIRED) and len(NUMERIC_OPTIONS) > 100


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(NUMERIC_OPTIONS), text=NUMBER_TEXT)
def test_a_number_is_accepted_only_in_range_else_one_line(option, text, capsys):
    capsys.readouterr()
    command, flag = option
    nargs = {"--defocus": 2, "--sizes": 1}.get(flag, 1)
    argv = [*command.split(), flag, *[text] * nargs, *REQUIRED[command]]
    try:
        args = cli.build_parser().parse_args(argv)
    except SystemExit as exit_:
        err = capsys.readouterr().err.strip()
        assert exit_.code == 2 and len(err.splitlines()) == 1 and "error:" in err and flag in err, err
        return
    value = getattr(args, flag.lstrip("-").replace("-", "_"))
    for number in value if isinstance(value, list) else [value]:
        assert math.isfinite(number)
        assert not (isinstance(number, int) and number < 0)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """4 particles of a blob map (32 px) with noise, and an earlier `simulate` result in out/."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("properties")
    volume, (optics, particles) = blob_map(32, seed=2), varied_particles(4, 32, 2.0, seed=2)
    images = np.random.default_rng(2).normal(size=(4, 32, 32)).astype(np.float32)
    write_dataset(root / "in", volume, 2.0, optics, particles, images)
    assert cli.main(["simulate", "--particles", str(root / "in/particles.star"), "--map", str(root / "in/map.mrc"),
                     "--out", str(root / "out"), "--device", "cpu"]) == 0
    return root


STAR_COLUMNS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize",
                "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
                "rlnOriginXAngst", "rlnOriginYAngst", "rlnCtfBfactor", "rlnCtfScalefactor", "rlnPhaseShift")
SPECIAL = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, -300.0, 1.5, 1e30, -1e30, 1e-30]),
                    st.floats(allow_nan=True, allow_infinity=True))


def _check_simulate(root: Path, capsys) -> None:
    earlier = _digest(root / "out")
    capsys.readouterr()
    rc = cli.main(["simulate", "--particles", str(root / "case/particles.star"), "--map", str(root / "case/map.mrc"),
                   "--out", str(root / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    if rc == 0:
        for stack in ("raw.mrcs", "sim.mrcs"):
            assert np.isfinite(mrcfile.read(root / "out" / stack)).all()
        assert "NaN" not in (root / "out/summary.json").read_text()
    else:
        errors = [line for line in err.splitlines() if "error:" in line]
        assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err
        assert _digest(root / "out") == earlier


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column=st.sampled_from(STAR_COLUMNS), value=SPECIAL, row=st.integers(0, 3))
def test_simulate_with_any_star_value(dataset, column, value, row, capsys):
    case = dataset / "case"
    case.mkdir(exist_ok=True)
    star = read_particle_star(dataset / "in/particles.star")
    optics, particles = star.optics.copy(), star.particles.copy()
    table = optics if column in optics else particles
    table[column] = table[column].astype(float)
    table.loc[table.index[row % len(table)], column] = value
    particles["rlnImageName"] = [f"{i + 1:06d}@{dataset / 'in/particles.mrcs'}" for i in range(len(particles))]
    (case / "map.mrc").write_bytes((dataset / "in/map.mrc").read_bytes())
    (case / "particles.star").write_text(_star_text(optics, particles))
    _check_simulate(dataset, capsys)


def _star_text(optics, particles) -> str:
    """A STAR file as a user could have edited it: any number, NaN and inf included, as text."""
    import io

    from cryorefine.io.star import format_table

    buffer = io.StringIO()
    for name, table in (("optics", optics), ("particles", particles)):
        buffer.write("# version 30001\n\n" + format_table(name, table))
    return buffer.getvalue()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=SPECIAL, where=st.sampled_from(["one pixel", "whole image", "map voxel", "whole map"]))
def test_simulate_with_any_pixel_value(dataset, value, where, capsys):
    case = dataset / "case"
    case.mkdir(exist_ok=True)
    images = mrcfile.read(dataset / "in/particles.mrcs").copy()
    volume = mrcfile.read(dataset / "in/map.mrc").copy()
    if where == "one pixel":
        images[1, 3, 5] = value
    elif where == "whole image":
        images[2] = value
    elif where == "map voxel":
        volume[4, 5, 6] = value
    else:
        volume[:] = value
    with mrcfile.new(case / "particles.mrcs", overwrite=True) as handle:
        handle.set_data(images.astype(np.float32))
    with mrcfile.new(case / "map.mrc", overwrite=True) as handle:
        handle.set_data(volume.astype(np.float32))
        handle.voxel_size = 2.0
    star = read_particle_star(dataset / "in/particles.star")
    particles = star.particles.copy()
    particles["rlnImageName"] = [f"{i + 1:06d}@particles.mrcs" for i in range(len(particles))]
    write_particle_star(case / "particles.star", star.optics, particles)
    _check_simulate(dataset, capsys)


# ---------------------------------------------------------------- the other commands, end to end

TINY_GAN = ["--base-channels", "4", "--depth", "2", "--batch-size", "4", "--log-every", "2",
            "--checkpoint-every", "2", "--steps", "2"]
# A valid run of each command; the option under test is appended (argparse keeps the last value).
END_TO_END = {
    "train": ["train", "--pairs", "{root}/pairs", "--device", "cpu", *TINY_GAN],
    "apply": ["apply", "--model", "{root}/model", "--particles", "{root}/pairs/sim.star", "--device", "cpu"],
    "generate": ["generate", "--model", "{root}/model", "--map", "{root}/in/map.mrc", "--like", "{root}/pairs/raw.star",
                 "--n", "3", "--device", "cpu"],
    "scene": ["scene", "--species", "{root}/scene_map.mrc:3", "--size", "96", "--pixel-size", "4.0032",
              "--min-separation", "60"],
    "translate train": ["translate", "train", "--scenes", "{root}/scenes", "--real", "{real}", "--steps", "2",
                        "--tile", "32", "--base-channels", "4", "--depth", "2", "--batch-size", "2", "--device", "cpu"],
    "translate apply": ["translate", "apply", "--baseline", "coloured", "--real", "{real}", "--scenes",
                        "{root}/scenes", "--tile", "64", "--margin", "8"],
}
# Options whose value multiplies the work (or memory) of a run: drawn from small values here, so
# the test stays a test; their whole range is drawn at parse time above.
SCALES_THE_WORK = {"--steps", "--n", "--n-micrographs", "--sampling-steps", "--base-channels", "--size",
                   "--noise-channels", "--batch-size", "--chain-length", "--num-workers", "--threads"}
EDGE_TEXT = {int: ["0", "1", "2", "3", "16", "17", "64", "4096", "8192", "2147483647", "4294967295"],
             float: ["0", "1e-300", "1e-6", "0.5", "1", "2.7", "300", "1e6", "1e15", "-1", "-1e4", "1e300"]}


def _end_to_end_cases() -> list[tuple[str, str, str]]:
    cases = []
    for prog, action in numeric_actions(cli.build_parser()):
        command, flag = prog.removeprefix("cryorefine "), action.option_strings[-1]
        if command not in END_TO_END:
            continue
        for text in EDGE_TEXT[action.type.kind]:
            if flag in SCALES_THE_WORK and action.type.kind(text) > 17:
                continue
            try:
                action.type(text)
            except Exception:  # refused at parse time: covered by test_a_number_is_accepted_only_in_range_else_one_line
                continue
            cases.append((command, flag, text))
    return cases


END_TO_END_CASES = _end_to_end_cases()


@pytest.fixture(scope="module")
def heavy(dataset, tmp_path_factory) -> Path:
    """Pairs, a tiny model and a two-micrograph scene beside `dataset`, and an earlier output of each command."""
    from conftest import REAL_MICROGRAPH, TRPV1

    from cryorefine.io.star import particle_parameters
    from cryorefine.physics.forward import ForwardModel

    root = dataset
    # Pairs of their own, whose raw images hold the map's projections: the simulate property test above
    # rewrites out/ with whatever STAR values it drew, and pure-noise images can fit a sim scale <= 0.
    volume, (optics, particles) = blob_map(32, seed=2), varied_particles(4, 32, 2.0, seed=2)
    star, map_path = write_dataset(root / "heavy_in", volume, 2.0, optics, particles, np.zeros((4, 32, 32), np.float32))
    clean = ForwardModel(volume, 2.0).simulate(particle_parameters(read_particle_star(star))).numpy()
    noisy = 3 * clean / clean.std() + np.random.default_rng(3).normal(size=clean.shape)
    write_dataset(root / "heavy_in", volume, 2.0, optics, particles, noisy.astype(np.float32))
    assert cli.main(["simulate", "--particles", str(star), "--map", str(map_path), "--out", str(root / "pairs"),
                     "--device", "cpu"]) == 0
    assert cli.main(["train", "--pairs", str(root / "pairs"), "--out", str(root / "model"), "--device", "cpu",
                     *TINY_GAN]) == 0
    (root / "scene_map.mrc").write_bytes((TRPV1 / "consensus_map.mrc").read_bytes())
    scene = [a.format(root=root, real=REAL_MICROGRAPH) for a in END_TO_END["scene"]]
    assert cli.main([*scene, "--n-micrographs", "2", "--out", str(root / "scenes")]) == 0
    for command, argv in END_TO_END.items():
        if command == "train":
            continue
        argv = [a.format(root=root, real=REAL_MICROGRAPH) for a in argv]
        assert cli.main([*argv, "--out", str(root / "earlier" / command.replace(" ", "_"))]) == 0, command
    return root


def _finite_outputs(folder: Path) -> None:
    import json

    for path in [*folder.rglob("*.mrc"), *folder.rglob("*.mrcs")]:
        data = mrcfile.read(path)
        assert np.isfinite(data).all(), path
    for path in folder.rglob("*.json"):
        json.loads(path.read_text(), parse_constant=lambda word: pytest.fail(f"{path}: {word}"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(END_TO_END_CASES))
def test_every_command_end_to_end_with_any_accepted_number(heavy, case, capsys):
    """Each heavy command (not simulate: above) run to the end with an edge value of one of its options."""
    from conftest import REAL_MICROGRAPH

    command, flag, text = case
    out = heavy / "earlier" / command.replace(" ", "_")
    if command in ("train", "translate train"):  # they refuse an existing model without --resume: a new folder
        out = Path(tempfile.mkdtemp(dir=heavy)) / "model"
    earlier = _digest(out) if out.exists() else None
    argv = [a.format(root=heavy, real=REAL_MICROGRAPH) for a in END_TO_END[command]]
    nargs = 2 if flag == "--defocus" else 1
    capsys.readouterr()
    rc = cli.main([*argv, flag, *[text] * nargs, "--out", str(out)])
    err = capsys.readouterr().err
    if rc == 0:
        _finite_outputs(out)
    else:
        errors = [line for line in err.splitlines() if "error:" in line]
        assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err
        if earlier is None:
            assert not out.exists(), f"a refused {command} left a half-made model folder"
        else:
            assert _digest(out) == earlier, "a refused run changed the earlier output"
