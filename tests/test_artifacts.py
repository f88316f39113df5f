"""The on-disk contract has one owner: every file name of an output folder is spelled in cryorefine/artifacts.py
and nowhere else in the package or the adapters (issue 15), so renaming a file renames it for every reader."""

from __future__ import annotations

import ast
from pathlib import Path

from cryorefine import artifacts
from tests.conftest import REPO

FOLDERS = (artifacts.PairsFolder, artifacts.ModelFolder, artifacts.TranslatorFolder, artifacts.EvaluationFolder,
           artifacts.ParticlesFolder, artifacts.SceneFolder, artifacts.TranslatedFolder)
PACKAGES = ("cryorefine", "cryorefine_scipion", "relion_external")


def _file_names() -> set[str]:
    return {value for folder in FOLDERS for key, value in vars(folder).items()
            if key.isupper() and isinstance(value, str)}


def test_every_output_file_name_is_spelled_only_in_the_artifacts_module():
    names = _file_names()
    assert {"sim.star", "checkpoint.pt", "scene.json", "particles.star", "coords_{:03d}.star"} <= names
    owner = REPO / "cryorefine" / "artifacts.py"
    elsewhere = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == owner:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in names:
                    elsewhere.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not elsewhere, "file names spelled outside cryorefine/artifacts.py:\n" + "\n".join(elsewhere)


def test_the_artifacts_module_names_each_file_once_per_folder():
    for folder in FOLDERS:
        values = [value for key, value in vars(folder).items() if key.isupper() and isinstance(value, str)]
        assert len(values) == len(set(values)), folder.__name__
    assert Path(artifacts.__file__).read_text().count('"scene.json"') == 1
