"""The scene and translate protocols in a real headless Scipion (nothing mocked).

A tiny scene (2 micrographs of 256 px at 4.88 Å/px) is built from the TRPV1 map imported as a
volume and the apoferritin C-alpha model imported as an atomic structure; its ground truth must
come back as native Scipion objects equal to what the engine wrote. The translation then trains
for a few steps against the real EPU micrograph imported as a SetOfMicrographs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from emtable import Table

from tests._scipion import headless_project, launch_protocol
from tests.conftest import APOFERRITIN_CA, REAL_MICROGRAPH, REAL_MICROGRAPH_PIXEL, TRPV1, run_cli

from pwem.protocols import ProtImportMicrographs, ProtImportPdb, ProtImportVolumes  # noqa: E402
from pyworkflow.plugin import Domain  # noqa: E402
from pyworkflow.viewer import DESKTOP_TKINTER  # noqa: E402

from cryorefine_scipion.constants import SPECIES_ATTR  # noqa: E402
from cryorefine_scipion.convert import map_with_sampling  # noqa: E402
from cryorefine_scipion.protocols import ProtCryorefineScene, ProtCryorefineTranslate  # noqa: E402
from cryorefine_scipion.protocols.protocol_scene import copy_numbers  # noqa: E402

# The pixel size is left empty: the first map's (4.88 Å) is the default.
SCENE = dict(numberOfMicrographs=2, size=256, defocusMin=1.5, defocusMax=2.5, dose=40.0, seed=3,
             volumeCopies="5", atomStructCopies="2", useGpu=False)
TRANSLATE = dict(steps=4, batchSize=2, tile=32, baseChannels=4, depth=2, useGpu=False)


@pytest.fixture(scope="module")
def project():
    yield from headless_project("cryorefine_scene_test")


@pytest.fixture(scope="module")
def species(project):
    trpv1 = launch_protocol(project, ProtImportVolumes, filesPath=str(TRPV1 / "consensus_map.mrc"),
                            samplingRate=4.88)
    apoferritin = launch_protocol(project, ProtImportPdb, inputPdbData=ProtImportPdb.IMPORT_FROM_FILES,
                                  pdbFile=str(APOFERRITIN_CA))
    return trpv1.outputVolume, apoferritin.outputPdb


def _new_scene(project, species, **kwargs):
    volume, structure = species
    protocol = project.newProtocol(ProtCryorefineScene, **{**SCENE, **kwargs})
    protocol.inputVolumes.append(volume)
    protocol.inputAtomStructs.append(structure)
    return protocol


@pytest.fixture(scope="module")
def scene(project, species):
    protocol = _new_scene(project, species)
    assert not protocol.validate(), protocol.validate()
    project.launchProtocol(protocol, wait=True)
    assert protocol.isFinished(), (Path(project.path) / protocol.getLogPaths()[0]).read_text()[-3000:]
    return protocol


@pytest.fixture(scope="module")
def real_micrographs(project):
    epu = REAL_MICROGRAPH
    return launch_protocol(project, ProtImportMicrographs, filesPath=str(epu.parent), filesPattern=epu.name,
                           samplingRate=REAL_MICROGRAPH_PIXEL, voltage=300, sphericalAberration=2.7, amplitudeContrast=0.1,
                           magnification=10000).outputMicrographs


@pytest.fixture(scope="module")
def translated(project, scene, real_micrographs):
    return launch_protocol(project, ProtCryorefineTranslate, inputScene=scene.outputScene,
                           inputMicrographs=real_micrographs, **TRANSLATE)


def _star_positions(path: str) -> list[tuple[int, int, str]]:
    return [(int(round(float(row.rlnCoordinateX))), int(round(float(row.rlnCoordinateY))), row.rlnCryorefineSpecies)
            for row in Table(fileName=path)]


def _registered_positions(coordinates) -> dict[int, list[tuple[int, int, str]]]:
    """Positions and species per micrograph id, in the order they were registered."""
    positions: dict[int, list] = {}
    for coordinate in coordinates.iterItems(orderBy="id"):
        positions.setdefault(coordinate.getMicId(), []).append(
            (coordinate.getX(), coordinate.getY(), coordinate.getAttributeValue(SPECIES_ATTR)))
    return positions


def _read(path: str) -> np.ndarray:
    with mrcfile.open(path, permissive=True) as handle:
        return np.asarray(handle.data, dtype=np.float32).copy()


# ---------------------------------------------------------------- plugin and form


def test_new_protocols_are_registered():
    assert {"ProtCryorefineScene", "ProtCryorefineTranslate"} <= set(Domain.getProtocols())
    assert "CryorefineScene" in Domain.getObjects()


def test_copy_numbers_accept_one_for_all_or_one_each_and_explain_mistakes():
    assert copy_numbers("7", 3, "maps") == [7, 7, 7]
    assert copy_numbers("1, 2 3", 3, "maps") == [1, 2, 3]
    with pytest.raises(ValueError, match="one number, or one per map \\(3\\); got '1 2'"):
        copy_numbers("1 2", 3, "maps")
    with pytest.raises(ValueError, match="whole numbers"):
        copy_numbers("two", 1, "maps")


def test_species_arguments_name_every_input_with_its_copies(project, species):
    protocol = _new_scene(project, species, volumeCopies="5", atomStructCopies="2",
                          speciesFiles="models/extra.pdb:3:extra other.mrc")
    volume, structure = species
    assert protocol._speciesArguments() == [
        "--species", f"{os.path.abspath(volume.getFileName())}:5",
        "--species", f"{os.path.abspath(structure.getFileName())}:2",
        "--species", f"{os.path.abspath('models/extra.pdb')}:3:extra", "--species", os.path.abspath("other.mrc")]


def test_a_map_whose_header_disagrees_with_scipion_is_copied_with_scipion_pixel_size(tmp_path):
    source = str(TRPV1 / "consensus_map.mrc")
    assert map_with_sampling(source, 4.88, str(tmp_path / "copy.mrc")) == source
    assert not (tmp_path / "copy.mrc").exists()
    assert map_with_sampling(source, 2.5, str(tmp_path / "copy.mrc")) == str(tmp_path / "copy.mrc")
    with mrcfile.open(tmp_path / "copy.mrc") as copy:
        assert float(copy.voxel_size.x) == pytest.approx(2.5)
        np.testing.assert_array_equal(copy.data, _read(source))


def test_validation_explains_unusable_scene_inputs(project, species, tmp_path):
    assert "Give at least one species" in " ".join(project.newProtocol(ProtCryorefineScene, **SCENE).validate())
    errors = " ".join(_new_scene(project, species, volumeCopies="5 x", speciesFiles=f"{tmp_path}/absent.mrc:3",
                                 defocusMin=3.0, size=16).validate())
    assert "Copies of the maps must be whole numbers" in errors
    assert f"Species file {tmp_path}/absent.mrc does not exist" in errors
    assert "0 <= minimum <= maximum" in errors and "at least 32 px" in errors
    translate = project.newProtocol(ProtCryorefineTranslate, sceneFrom=1, sceneFolder=str(tmp_path))
    assert f"The scene folder '{tmp_path}' holds no scene.json" in " ".join(translate.validate())


# ---------------------------------------------------------------- build scene


def test_scene_registers_the_engine_micrographs_with_their_optics(scene, species):
    description = json.loads(Path(scene.sceneDir("scene.json")).read_text())
    for micrographs, prefix in ((scene.outputMicrographs, "micrograph"), (scene.outputCleanMicrographs, "clean")):
        assert micrographs.getSize() == 2
        assert micrographs.getSamplingRate() == pytest.approx(4.88)
        assert micrographs.getDimensions()[:2] == (256, 256)
        acquisition = micrographs.getAcquisition()
        assert (acquisition.getVoltage(), acquisition.getSphericalAberration(),
                acquisition.getAmplitudeContrast()) == (300.0, 2.7, 0.1)
        names = [os.path.abspath(m.getFileName()) for m in micrographs.iterItems(orderBy="id")]
        assert names == [os.path.abspath(scene.sceneDir(f"{prefix}_{i:03d}.mrc")) for i in range(2)]
    assert [s["name"] for s in description["species"]] == [Path(obj.getFileName()).stem for obj in species]
    assert scene.outputScene.getSamplingRate() == pytest.approx(4.88) and scene.outputScene.getBoxSize() == 256
    assert "Built 2 micrographs (256 px, 4.880 Å/px)" in scene.summary()[0]
    for output in (scene.outputMicrographs, scene.outputCoordinates, scene.outputCTF):
        assert Domain.findViewers(output.getClassName(), DESKTOP_TKINTER), output.getClassName()


def test_scene_coordinates_and_ctfs_are_the_ground_truth(scene):
    description = json.loads(Path(scene.sceneDir("scene.json")).read_text())
    coordinates = scene.outputCoordinates
    assert coordinates.getBoxSize() == max(s["box"] for s in description["species"])
    assert coordinates.getMicrographs().getObjId() == scene.outputMicrographs.getObjId()
    registered = _registered_positions(coordinates)
    micrograph_ids = [m.getObjId() for m in scene.outputMicrographs.iterItems(orderBy="id")]
    expected_counts = [m["particles"] for m in description["micrographs"]]
    assert sum(expected_counts) == coordinates.getSize() > 0
    for index, micrograph_id in enumerate(micrograph_ids):
        star = _star_positions(scene.sceneDir(f"coords_{index:03d}.star"))
        assert len(star) == expected_counts[index]
        assert registered[micrograph_id] == star
    for ctf, entry, micrograph_id in zip(scene.outputCTF.iterItems(orderBy="id"), description["micrographs"],
                                         micrograph_ids):
        assert ctf.getMicrograph().getObjId() == micrograph_id
        # the engine's U > V with its angle is already Scipion's standard form
        assert ctf.getDefocusU() == pytest.approx(entry["defocus"]["u_a"])
        assert ctf.getDefocusV() == pytest.approx(entry["defocus"]["v_a"])
        assert ctf.getDefocusAngle() == pytest.approx(entry["defocus"]["angle_deg"] % 180)


def test_scene_protocol_passes_the_engine_what_a_direct_run_gets(scene, tmp_path):
    """The same species, settings and seed on the command line give the same micrographs."""
    direct = tmp_path / "direct"
    result = run_cli("scene", "--species", f"{TRPV1 / 'consensus_map.mrc'}:5",
                     "--species", f"{APOFERRITIN_CA}:2", "--n-micrographs", 2,
                     "--size", 256, "--pixel-size", 4.88, "--defocus", 1.5, 2.5, "--dose", 40, "--seed", 3,
                     "--out", direct)
    assert result.returncode == 0, result.stderr
    for index in range(2):
        np.testing.assert_allclose(_read(scene.sceneDir(f"micrograph_{index:03d}.mrc")),
                                   _read(str(direct / f"micrograph_{index:03d}.mrc")), atol=1e-4)


# ---------------------------------------------------------------- translate scene


def test_translate_registers_translated_micrographs_with_the_scene_ground_truth(project, translated, scene):
    micrographs = translated.outputMicrographs
    assert micrographs.getSize() == 2 and micrographs.getSamplingRate() == pytest.approx(4.88)
    assert micrographs.getAcquisition().getVoltage() == 300.0
    for index, micrograph in enumerate(micrographs.iterItems(orderBy="id")):
        assert micrograph.getFileName() == os.path.relpath(translated.translatedDir(f"translated_{index:03d}.mrc"))
        image = _read(micrograph.getFileName())
        assert image.shape == (256, 256) and np.isfinite(image).all() and image.std() > 0
        assert not np.allclose(image, _read(scene.sceneDir(f"clean_{index:03d}.mrc")))
    coordinates = translated.outputCoordinates
    assert coordinates.getMicrographs().getObjId() == micrographs.getObjId()
    assert coordinates.getBoxSize() == scene.outputCoordinates.getBoxSize()
    assert list(_registered_positions(coordinates).values()) == list(
        _registered_positions(scene.outputCoordinates).values())
    assert [c.getDefocusU() for c in translated.outputCTF] == [c.getDefocusU() for c in scene.outputCTF]
    log = (Path(project.path) / translated.getLogPaths()[0]).read_text()
    assert "--real" in log and "--method" not in log  # the default method is left to the engine
    assert log.count('"--device" "cpu"') == 2  # Use GPU decides both steps' device (No on this machine)
    assert "Translated 2 synthetic micrographs (contrastive, 4 steps)" in translated.summary()[0]


def test_translate_reads_a_scene_folder_too(project, scene, real_micrographs):
    """A folder written by `cryorefine scene` outside Scipion: the coordinate box is the largest species box."""
    from_folder = launch_protocol(project, ProtCryorefineTranslate, sceneFrom=1,
                                  sceneFolder=os.path.abspath(scene.sceneDir()), inputMicrographs=real_micrographs,
                                  **TRANSLATE)
    description = json.loads(Path(scene.sceneDir("scene.json")).read_text())
    assert from_folder.outputMicrographs.getSize() == 2
    assert from_folder.outputCoordinates.getBoxSize() == max(s["box"] for s in description["species"])
    assert list(_registered_positions(from_folder.outputCoordinates).values()) == list(
        _registered_positions(scene.outputCoordinates).values())
