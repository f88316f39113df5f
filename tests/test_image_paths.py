"""RELION's image-path rule: every STAR we write names its stacks so that RELION, run from the project
folder, reads exactly the stack that was written; our reader follows the same rule first.

The project below holds decoy stacks with the names our outputs use (`particles.mrcs`, `sim.mrcs`, ...)
at 48 px, while our outputs are 32 px: a STAR naming its stacks relative to its own folder would make
RELION read a decoy (issue 16's "wrong images, silently")."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryorefine.io.mrc import ParticleImages
from cryorefine.io.star import locate_stack, read_particle_star, stack_reference
from tests.conftest import TRPV1, run_cli

needs_relion = pytest.mark.skipif(shutil.which("relion_image_handler") is None,
                                  reason="RELION not installed (apt-get install relion)")
TINY_MODEL = ["--base-channels", "4", "--depth", "2", "--batch-size", "4", "--log-every", "2",
              "--checkpoint-every", "2", "--steps", "2"]
DECOYS = ("raw.mrcs", "sim.mrcs", "clean.mrcs")  # particles.mrcs is the project's own 48 px stack


def _relion_stats(star: str, cwd: Path) -> list[tuple[int, float, float]]:
    """(box, mean, std) of every image, as `relion_image_handler --stats` reads the STAR from `cwd`."""
    import subprocess

    result = subprocess.run(["relion_image_handler", "--i", star, "--stats"], cwd=cwd, capture_output=True,
                            text=True, check=True)
    pattern = re.compile(r"= (\d+) x \d+ x 1 x 1 ; avg= (\S+) stddev= (\S+)")
    return [(int(m[1]), float(m[2]), float(m[3])) for m in pattern.finditer(result.stdout)]


def _written_stats(stack: Path) -> list[tuple[int, float, float]]:
    images = mrcfile.read(stack)
    return [(images.shape[-1], float(image.mean()), float(image.std())) for image in images]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A RELION-like project folder (with a space, as users' folders have) holding the bundled particles,
    the map and 48 px decoys, and the outputs of each command run from inside it."""
    folder = tmp_path_factory.mktemp("image paths") / "my project"
    folder.mkdir()
    for name in ("particles.star", "particles.mrcs", "consensus_map.mrc"):
        shutil.copyfile(TRPV1 / name, folder / name)
    for name in DECOYS:
        shutil.copyfile(TRPV1 / "particles.mrcs", folder / name)
    outside = tmp_path_factory.mktemp("outside") / "applied"
    steps = [
        ("simulate", "--particles", "particles.star", "--map", "consensus_map.mrc", "--box", "32", "--out", "Pairs"),
        ("train", "--pairs", "Pairs", "--out", "Model", *TINY_MODEL),
        ("apply", "--model", "Model", "--particles", "Pairs/sim.star", "--out", "Jobs/Applied"),
        ("apply", "--model", "Model", "--particles", "Pairs/sim.star", "--out", outside),
        ("generate", "--model", "Model", "--map", "consensus_map.mrc", "--like", "Pairs/raw.star", "--n", "6",
         "--out", "Generated"),
    ]
    for argv in steps:
        result = run_cli(*argv, "--device", "cpu", cwd=folder)
        assert result.returncode == 0, result.stderr
    return folder, outside


@needs_relion
@pytest.mark.parametrize("star,stack", [
    ("Pairs/raw.star", "Pairs/raw.mrcs"),
    ("Pairs/sim.star", "Pairs/sim.mrcs"),
    ("Jobs/Applied/particles.star", "Jobs/Applied/particles.mrcs"),
    ("Generated/particles.star", "Generated/particles.mrcs"),
    ("Generated/clean.star", "Generated/clean.mrcs"),
])
def test_relion_run_from_the_project_reads_exactly_the_written_stack(project, star, stack):
    folder, _ = project
    names = read_particle_star(folder / star).particles["rlnImageName"]
    assert {name.partition("@")[2] for name in names} == {stack}  # relative to the project, not to the STAR
    relion = _relion_stats(star, folder)
    written = _written_stats(folder / stack)
    assert len(relion) == len(written) > 0
    assert [box for box, _, _ in relion] == [32] * len(written)  # not the 48 px decoy of the same name
    np.testing.assert_allclose([s[1:] for s in relion], [s[1:] for s in written], rtol=1e-3, atol=1e-4)


@needs_relion
def test_an_output_outside_the_project_is_named_by_its_absolute_path(project):
    folder, outside = project
    names = read_particle_star(outside / "particles.star").particles["rlnImageName"]
    assert {name.partition("@")[2] for name in names} == {str((outside / "particles.mrcs").resolve())}
    relion = _relion_stats(str(outside / "particles.star"), folder)
    np.testing.assert_allclose([s[1:] for s in relion], [s[1:] for s in _written_stats(outside / "particles.mrcs")],
                               rtol=1e-3, atol=1e-4)


def test_our_reader_takes_the_file_relion_reads_and_says_so_when_another_has_the_same_name(
        project, monkeypatch, caplog):
    """An old-style STAR (stack named relative to its own folder) beside a project stack of the same name:
    RELION reads the project's; so do we, with one warning naming both."""
    folder, _ = project
    old_style = folder / "Jobs" / "Applied" / "old_style.star"
    old_style.write_text((folder / "Jobs/Applied/particles.star").read_text()
                         .replace("@Jobs/Applied/particles.mrcs", "@particles.mrcs"))
    monkeypatch.chdir(folder)
    with caplog.at_level(logging.INFO, logger="cryorefine"):
        images = ParticleImages(read_particle_star(old_style))
    assert images.box == 48  # the project's particles.mrcs, as relion_image_handler reads it
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "particles.mrcs" in warnings[0] and "Jobs/Applied/particles.mrcs" in warnings[0]
    images.close()


def test_a_stack_only_beside_the_star_is_found_and_the_fallback_is_said(project, tmp_path, monkeypatch, caplog):
    folder, _ = project
    monkeypatch.chdir(tmp_path)  # not the project: RELION would not find Pairs/sim.mrcs from here
    location = locate_stack("Pairs/sim.mrcs", folder / "Pairs" / "sim.star")
    assert location.path.resolve() == (folder / "Pairs/sim.mrcs").resolve() and not location.relion_rule
    with caplog.at_level(logging.INFO, logger="cryorefine"):
        ParticleImages(read_particle_star(folder / "Pairs/sim.star")).close()
    assert any("relative to the STAR file's folder" in r.getMessage() for r in caplog.records)


def test_a_stack_found_nowhere_names_where_it_looked(tmp_path, monkeypatch):
    from cryorefine.errors import InputError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=f"not found \\(looked relative to {tmp_path.resolve()}, as RELION does"):
        locate_stack("absent.mrcs", tmp_path / "x.star")
    with pytest.raises(InputError, match="not found \\(looked as an absolute path"):
        locate_stack(str(tmp_path / "absent.mrcs"), tmp_path / "x.star")


@pytest.mark.parametrize("folder", ["o#1", "it's"])
def test_an_output_path_a_star_file_cannot_hold_is_refused_before_any_work(project, tmp_path, folder):
    """RELION reads '#' as a comment, and a quote ends a value: such a name would be published unreadable."""
    root, _ = project
    result = run_cli("apply", "--model", "Model", "--particles", "Pairs/sim.star", "--device", "cpu",
                     "--out", tmp_path / folder, cwd=root)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2 and len(errors) == 1 and "cannot name an image stack" in errors[0], result.stderr
    assert not (tmp_path / folder).exists()


def test_a_project_dir_that_is_not_a_folder_is_refused(project):
    root, _ = project
    result = run_cli("apply", "--model", "Model", "--particles", "Pairs/sim.star", "--out", "x",
                     "--project-dir", "particles.star", cwd=root)
    assert result.returncode == 2 and "--project-dir: particles.star is not an existing folder" in result.stderr


def test_stack_reference_is_relative_inside_the_project_and_absolute_outside(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "Extract").mkdir(parents=True)
    monkeypatch.chdir(project)
    assert stack_reference(project / "Extract" / "a.mrcs") == "Extract/a.mrcs"
    assert stack_reference(Path("Extract/a.mrcs")) == "Extract/a.mrcs"
    assert stack_reference(tmp_path / "elsewhere" / "a.mrcs") == str((tmp_path / "elsewhere" / "a.mrcs").resolve())
    assert stack_reference(tmp_path / "elsewhere" / "a.mrcs", project_dir=tmp_path) == "elsewhere/a.mrcs"
