"""Scipion particles <-> RELION 3.1 particle STAR files, with exact pose conversion; scene folders -> Scipion.

Conventions (RELION 3.1, checked against `relion_project`; Scipion/pwem):
- RELION Euler angles (rot, tilt, psi), degrees, ZYZ: A = Rz(psi)·Ry(tilt)·Rz(rot).
- RELION origins (rlnOriginX/YAngst) in Å; Scipion shifts in pixels.
- Scipion 4x4 transform T: T[:3,:3] = Aᵀ and T[:3,3] = Aᵀ·origin_px,
  so A = T[:3,:3]ᵀ and origin_px = A·T[:3,3].
- CTF: both keep defocus U/V in Å and the angle of the U axis from the X axis;
  Scipion standardises to defocusU >= defocusV and 0 <= angle < 180.

Scipion's own stack (numpy, mrcfile, pwem) and the engine's torch-free STAR reader and writer,
path rules and Euler matrix.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pyworkflow.object as pwobj
from pwem.objects import (
    Acquisition,
    Coordinate,
    CTFModel,
    Micrograph,
    Particle,
    SetOfCoordinates,
    SetOfCTF,
    SetOfMicrographs,
    SetOfParticles,
    Transform,
)

from cryorefine.artifacts import SceneDescription
from cryorefine.io.star import locate_stack, read_coordinate_star, read_particle_star, stack_reference, write_star
from cryorefine.physics.euler import relion_rotation
from cryorefine_scipion.constants import (
    SCENE_COORDINATES,
    SIM_CORRELATION_ATTR,
    SIM_CORRELATION_LABEL,
    SOURCE_ID_LABEL,
    SPECIES_ATTR,
)

MRC_EXTENSIONS = (".mrc", ".mrcs", ".st", ".map")
# Per-particle attributes the RELION import keeps as `_rln<Label>` and that the engine uses.
PASSED_THROUGH_LABELS = ("rlnRandomSubset", "rlnCtfBfactor", "rlnCtfScalefactor")


@dataclass(frozen=True)
class RelionPose:
    """One particle's pose in RELION units: angles in degrees, origins in Å."""

    rot: float
    tilt: float
    psi: float
    origin_x_angst: float
    origin_y_angst: float


def relion_angles(matrix: np.ndarray) -> tuple[float, float, float]:
    """(rot, tilt, psi) in degrees, tilt in [0, 180], for a RELION rotation matrix A."""
    a = np.asarray(matrix, dtype=np.float64)
    sin_tilt = np.hypot(a[0, 2], a[1, 2])
    tilt = np.arctan2(sin_tilt, a[2, 2])
    if sin_tilt > 1e-9:
        rot = np.arctan2(a[2, 1], a[2, 0])
        psi = np.arctan2(a[1, 2], -a[0, 2])
    elif a[2, 2] > 0:  # tilt = 0: only rot + psi is defined; put it all in psi
        rot, psi = 0.0, np.arctan2(a[0, 1], a[0, 0])
    else:  # tilt = 180: only psi - rot is defined
        rot, psi = 0.0, np.arctan2(a[0, 1], -a[0, 0])
    return float(np.rad2deg(rot)), float(np.rad2deg(tilt)), float(np.rad2deg(psi))


def scipion_matrix(pose: RelionPose, pixel_size: float) -> np.ndarray:
    """The Scipion 4x4 projection transform for a RELION pose (shifts in pixels)."""
    a = relion_rotation(pose.rot, pose.tilt, pose.psi)
    origin_px = np.array([pose.origin_x_angst, pose.origin_y_angst, 0.0]) / pixel_size
    matrix = np.eye(4)
    matrix[:3, :3] = a.T
    matrix[:3, 3] = a.T @ origin_px
    return matrix


def relion_pose(matrix: np.ndarray, pixel_size: float) -> RelionPose:
    """The RELION pose of a Scipion 4x4 projection transform.

    The out-of-plane part of the shift (the z of A·t) does not move the projection and is dropped.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    a = matrix[:3, :3].T
    origin_px = a @ matrix[:3, 3]
    rot, tilt, psi = relion_angles(a)
    return RelionPose(rot, tilt, psi, float(origin_px[0] * pixel_size), float(origin_px[1] * pixel_size))


def is_mrc_stack(filename: str) -> bool:
    return filename.lower().endswith(MRC_EXTENSIONS)


def read_images(particles: SetOfParticles, limit: int | None = None) -> np.ndarray:
    """The pixels of a set's first `limit` particles (all when None), in id order, from the MRC stacks it
    points to (memory-mapped, so a few images of a large stack are cheap)."""
    stacks = {}
    images = []
    try:
        for particle in particles.iterItems(orderBy="id", limit=limit):
            index, filename = particle.getLocation()
            if filename not in stacks:
                stacks[filename] = mrcfile.mmap(filename, mode="r", permissive=True)
            data = stacks[filename].data
            images.append(np.array(data[index - 1] if data.ndim == 3 else data, dtype=np.float32))
    finally:
        for handle in stacks.values():
            handle.close()
    return np.stack(images)


# ---------------------------------------------------------------- writing


def _optics_key(acquisition: Acquisition) -> tuple[float, float, float]:
    return (float(acquisition.getVoltage()), float(acquisition.getSphericalAberration()),
            float(acquisition.getAmplitudeContrast()))


def write_particles_star(particles: SetOfParticles, star_path: str, with_pose: bool = True) -> int:
    """Write a SetOfParticles (CTF required, 3D alignment when `with_pose`) as a RELION 3.1 STAR file.

    Image paths are written as RELION reads them, relative to the current directory (the Scipion
    project folder, where protocols run); each row keeps the Scipion id in rlnImageId so results
    can be matched back. Returns the number of rows.
    """
    pixel_size = float(particles.getSamplingRate())
    box = int(particles.getXDim())
    groups: dict[tuple[float, float, float], int] = {}
    labels = ["rlnImageName", SOURCE_ID_LABEL]
    if with_pose:
        labels += ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]
    labels += ["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnOpticsGroup"]
    first = particles.getFirstItem()
    extra = [label for label in PASSED_THROUGH_LABELS if first.hasAttribute(f"_{label}")]
    rows = []

    references: dict[str, str] = {}  # one per stack, not per particle
    for particle in particles.iterItems(orderBy="id"):
        index, filename = particle.getLocation()
        if filename not in references:
            references[filename] = stack_reference(filename)
        stack = references[filename]
        ctf = particle.getCTF()
        group = groups.setdefault(_optics_key(particle.getAcquisition()), len(groups) + 1)
        row = [f"{index or 1:06d}@{stack}", int(particle.getObjId())]
        if with_pose:
            pose = relion_pose(particle.getTransform().getMatrix(), pixel_size)
            row += [pose.rot, pose.tilt, pose.psi, pose.origin_x_angst, pose.origin_y_angst]
        row += [float(ctf.getDefocusU()), float(ctf.getDefocusV()), float(ctf.getDefocusAngle()),
                float(ctf.getPhaseShift() or 0.0), group]
        row += [getattr(particle, f"_{label}").get() for label in extra]
        rows.append(row)

    optics = pd.DataFrame(
        [[f"opticsGroup{group}", group, voltage, cs, amplitude_contrast, pixel_size, box, 2]
         for (voltage, cs, amplitude_contrast), group in groups.items()],
        columns=["rlnOpticsGroupName", "rlnOpticsGroup", "rlnVoltage", "rlnSphericalAberration",
                 "rlnAmplitudeContrast", "rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality"])
    write_star(star_path, {"optics": optics, "particles": pd.DataFrame(rows, columns=labels + extra)})
    return len(rows)


# ---------------------------------------------------------------- reading


@dataclass
class StarParticles:
    """The rows of a RELION 3.1 particle STAR file as the plugin needs them, each a dict by label."""

    path: str
    pixel_size: float
    optics: dict[int, dict]  # optics group -> row
    rows: list[dict]


def read_particles_star(star_path: str) -> StarParticles:
    """An engine-written particle STAR file, read by the engine's reader; its one pixel size is kept exact
    (it is compared with the input set's sampling rate)."""
    star = read_particle_star(star_path)
    pixel_sizes = set(star.optics["rlnImagePixelSize"].astype(float))
    if len(pixel_sizes) != 1:
        raise ValueError(f"{star_path}: expected one pixel size, found {sorted(pixel_sizes)}")
    optics = {int(row["rlnOpticsGroup"]): row for row in star.optics.to_dict("records")}
    return StarParticles(star_path, pixel_sizes.pop(), optics, star.particles.to_dict("records"))


@functools.lru_cache(maxsize=4096)
def _stack_location(stack: str, star_path: str, working_dir: str) -> str:
    """The engine's rule (RELION's: relative to the project folder, where protocols run), once per stack
    and folder (`working_dir` keys the cache: the answer depends on it)."""
    return os.path.relpath(locate_stack(stack, Path(star_path)).path)


def _image_location(image_name: str, star_path: str) -> tuple[int, str]:
    """(1-based index, path relative to the working directory) of a `N@stack` name."""
    number, _, stack = image_name.partition("@")
    return int(number), _stack_location(stack, star_path, os.getcwd())


def _set_correlation(particle: Particle, row: dict) -> None:
    if SIM_CORRELATION_LABEL in row:
        setattr(particle, SIM_CORRELATION_ATTR, pwobj.Float(float(row[SIM_CORRELATION_LABEL])))


def fill_from_sources(output: SetOfParticles, star: StarParticles, sources: SetOfParticles) -> None:
    """Add one particle per STAR row, copying CTF, pose, acquisition and attributes from the
    source particle named by rlnImageId; only the image location (and, if the pixel size
    changed, the shift in pixels) differ. One pass over the sources, in id order."""
    rows_by_id: dict[int, list] = {}
    for row in star.rows:
        if SOURCE_ID_LABEL not in row:
            raise ValueError(f"{star.path}: rows lack _{SOURCE_ID_LABEL}, cannot match them to the input particles")
        rows_by_id.setdefault(int(row[SOURCE_ID_LABEL]), []).append(row)
    renumber = any(len(rows) > 1 for rows in rows_by_id.values())  # a source used twice
    scale = float(sources.getSamplingRate()) / star.pixel_size
    found = 0
    for source in sources.iterItems(orderBy="id"):
        for row in rows_by_id.get(int(source.getObjId()), ()):
            particle = source.clone()
            if renumber:
                particle.setObjId(None)
            particle.setLocation(_image_location(row["rlnImageName"], star.path))
            particle.setSamplingRate(star.pixel_size)
            if scale != 1.0 and particle.hasTransform():
                matrix = particle.getTransform().getMatrix()
                matrix[:3, 3] *= scale
                particle.getTransform().setMatrix(matrix)
            _set_correlation(particle, row)
            output.append(particle)
            found += 1
    if found != len(star.rows):
        missing = sorted(set(rows_by_id) - {int(i) for i in sources.getIdSet()})[:5]
        raise ValueError(f"{star.path}: rows name particles that are not in the input set (ids {missing}...)")


def particle_from_row(row: dict, star: StarParticles, acquisition: Acquisition) -> Particle:
    """A new particle with pose, CTF and acquisition read from a STAR row."""
    optics = star.optics[int(row["rlnOpticsGroup"])]
    particle = Particle(location=_image_location(row["rlnImageName"], star.path))
    particle.setSamplingRate(star.pixel_size)
    pose = RelionPose(float(row["rlnAngleRot"]), float(row["rlnAngleTilt"]), float(row["rlnAnglePsi"]),
                      float(row.get("rlnOriginXAngst", 0.0)), float(row.get("rlnOriginYAngst", 0.0)))
    particle.setTransform(Transform(scipion_matrix(pose, star.pixel_size)))
    ctf = CTFModel(defocusU=float(row["rlnDefocusU"]), defocusV=float(row["rlnDefocusV"]),
                   defocusAngle=float(row.get("rlnDefocusAngle", 0.0)))
    ctf.setPhaseShift(float(row.get("rlnPhaseShift", 0.0)))
    ctf.standardize()
    particle.setCTF(ctf)
    particle_acquisition = Acquisition()
    particle_acquisition.copy(acquisition)
    particle_acquisition.setVoltage(float(optics["rlnVoltage"]))
    particle_acquisition.setSphericalAberration(float(optics["rlnSphericalAberration"]))
    particle_acquisition.setAmplitudeContrast(float(optics["rlnAmplitudeContrast"]))
    particle.setAcquisition(particle_acquisition)
    _set_correlation(particle, row)
    return particle


# ---------------------------------------------------------------- scenes


def map_with_sampling(path: str, sampling: float, copy_path: str) -> str:
    """`path` when its MRC header says `sampling` Å/px, else a copy at `copy_path` whose header does.

    `cryorefine scene` takes a map's pixel size from its header; Scipion's value is the one the user set.
    """
    with mrcfile.open(path, permissive=True, header_only=True) as handle:
        header_sampling = float(handle.voxel_size.x)
    if abs(header_sampling - sampling) <= 1e-3 * sampling:
        return path
    with mrcfile.open(path, permissive=True) as source, mrcfile.new(copy_path, overwrite=True) as copy:
        copy.set_data(np.asarray(source.data).copy())
        copy.voxel_size = sampling
    return copy_path


@dataclass(frozen=True)
class Scene:
    """A `cryorefine scene` folder and its description, read by the engine (cryorefine.artifacts)."""

    path: str
    description: SceneDescription

    def file(self, template: str, index: int) -> str:
        return os.path.join(self.path, template.format(index))


def read_scene(folder: str) -> Scene:
    return Scene(folder, SceneDescription.read(Path(folder)))


def scene_acquisition(scene: Scene) -> Acquisition:
    return Acquisition(voltage=scene.description.voltage_kv, sphericalAberration=scene.description.cs_mm,
                       amplitudeContrast=scene.description.amplitude_contrast, magnification=10000)


def fill_scene_micrographs(micrographs: SetOfMicrographs, scene: Scene, folder: str, template: str) -> None:
    """One micrograph per scene micrograph, in scene order: the file `template` names in `folder`
    (e.g. clean_{:03d}.mrc in the scene folder, translated_{:03d}.mrc where a translation wrote them)."""
    micrographs.setAcquisition(scene_acquisition(scene))
    micrographs.setSamplingRate(scene.description.pixel_size)
    for index in range(len(scene.description.micrographs)):
        filename = os.path.relpath(os.path.join(folder, template.format(index)))
        micrograph = Micrograph(location=filename)
        micrograph.setMicName(os.path.basename(filename))
        micrographs.append(micrograph)


def fill_scene_coordinates(coordinates: SetOfCoordinates, scene: Scene) -> None:
    """The scene's particle centres (rounded to pixels) on the micrographs of `coordinates`,
    which must be the scene's micrographs in scene order; each keeps its species name."""
    micrographs = coordinates.getMicrographs()
    for index, micrograph in enumerate(micrographs.iterItems(orderBy="id")):
        for row in read_coordinate_star(Path(scene.file(SCENE_COORDINATES, index))).itertuples():
            coordinate = Coordinate()
            coordinate.setMicrograph(micrograph)
            coordinate.setPosition(int(round(float(row.rlnCoordinateX))), int(round(float(row.rlnCoordinateY))))
            setattr(coordinate, SPECIES_ATTR, pwobj.String(str(row.rlnCryorefineSpecies)))
            coordinates.append(coordinate)


def fill_scene_ctfs(ctfs: SetOfCTF, scene: Scene, micrographs: SetOfMicrographs) -> None:
    """The defocus each scene micrograph was simulated with, exactly, on the micrographs in scene order."""
    ctfs.setMicrographs(micrographs)
    for entry, micrograph in zip(scene.description.micrographs, micrographs.iterItems(orderBy="id")):
        ctf = CTFModel()
        ctf.setStandardDefocus(entry.defocus_u_a, entry.defocus_v_a, entry.defocus_angle_deg)
        ctf.setMicrograph(micrograph.clone())
        ctfs.append(ctf)
