"""RELION particle STAR files: read 3.0 / 3.1 / 4.0 / 5.0, write 3.1.

Reading goes through `starfile`; everything that can be malformed is checked here and
reported as an `InputError` naming the file. Writing is our own small writer so the
output is exactly RELION 3.1 (`# version 30001`, optics + particles tables).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryorefine.errors import InputError, OutputError
from cryorefine.io.atomic import NOT_PUBLISHED, atomic_write_text
from cryorefine.physics import ranges

# Columns that RELION 3.0 keeps per particle and 3.1+ keeps per optics group.
OPTICS_COLUMNS_30 = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
REQUIRED_PARTICLE_COLUMNS = ("rlnImageName",)
CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV")
POSE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
# Optics terms we do not model; refused unless they are neutral.
UNSUPPORTED_OPTICS = ("rlnBeamTiltX", "rlnBeamTiltY", "rlnOddZernike", "rlnEvenZernike")
MAG_MATRIX = ("rlnMagMat00", "rlnMagMat01", "rlnMagMat10", "rlnMagMat11")
CORRELATION_COLUMN = "rlnCryorefineSimCorrelation"
# Columns this module computes with: converted to numbers when read, so a hand-edited word or
# "nan" is refused there with the file named (per-particle CTF and pose columns are checked
# where they are used, by particle_parameters).
NUMERIC_COLUMNS = ("rlnOpticsGroup", "rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality", *OPTICS_COLUMNS_30,
                   "rlnDetectorPixelSize", "rlnMagnification", "rlnOriginX", "rlnOriginY", "rlnOriginXAngst",
                   "rlnOriginYAngst", "rlnCtfDataAreCtfPremultiplied", "rlnBeamTiltX", "rlnBeamTiltY", *MAG_MATRIX)
INTEGER_COLUMNS = ("rlnOpticsGroup", "rlnImageSize", "rlnImageDimensionality", "rlnCtfDataAreCtfPremultiplied")
# Per-particle CTF terms RELION takes as these values when absent. Other readers do not (cryoDRGN 4.3's
# parse_ctf_star reads a missing rlnPhaseShift as NaN), so every particle STAR we write states them.
NEUTRAL_CTF = {"rlnDefocusAngle": 0.0, "rlnPhaseShift": 0.0, "rlnCtfBfactor": 0.0, "rlnCtfScalefactor": 1.0}


@dataclass
class ParticleStar:
    """A particle STAR file normalised to the RELION 3.1 layout.

    `optics` has one row per optics group (always with rlnImagePixelSize);
    `particles` one row per particle, with rlnOpticsGroup, and origins in Å.
    """

    path: Path
    optics: pd.DataFrame
    particles: pd.DataFrame
    source_version: str  # "3.0", "3.1" or "5.0"

    def __len__(self) -> int:
        return len(self.particles)

    @property
    def pixel_size(self) -> float:
        """The one pixel size of all optics groups (Å); sets mixing pixel sizes are refused: every command
        works at one sampling."""
        sizes = np.unique(self.optics["rlnImagePixelSize"].astype(float).round(5))
        if len(sizes) > 1:
            raise InputError(self.path, f"optics groups have different pixel sizes {list(sizes)}; "
                             "process each pixel size separately")
        return float(sizes[0])


@dataclass
class ParticleParameters:
    """Per-particle physical parameters as float arrays (length N), in RELION units."""

    rot: np.ndarray
    tilt: np.ndarray
    psi: np.ndarray
    origin_x_angst: np.ndarray
    origin_y_angst: np.ndarray
    defocus_u: np.ndarray  # Å, underfocus positive
    defocus_v: np.ndarray
    defocus_angle: np.ndarray  # degrees, U axis from image X axis
    phase_shift: np.ndarray  # degrees
    bfactor: np.ndarray  # Å²
    ctf_scale: np.ndarray
    voltage: np.ndarray  # kV
    cs: np.ndarray  # mm
    amplitude_contrast: np.ndarray
    pixel_size: np.ndarray  # Å
    optics_group: np.ndarray  # int
    random_subset: np.ndarray  # int, 0 when absent

    def subset(self, index: np.ndarray | slice) -> "ParticleParameters":
        return ParticleParameters(**{k: v[index] for k, v in self.__dict__.items()})


def read_star_tables(path: Path) -> dict[str, pd.DataFrame]:
    import starfile

    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a STAR file")
    try:
        tables = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many kinds on malformed text
        raise InputError(path, f"malformed STAR file ({type(exc).__name__}: {exc})") from None
    tables = {k: v for k, v in tables.items() if isinstance(v, pd.DataFrame)}
    if not tables:
        raise InputError(path, "no data table (loop_) found")
    return tables


def _version_comment(path: Path) -> str | None:
    with open(path, "r", errors="replace") as handle:
        for _, line in zip(range(50), handle):
            if line.startswith("# version"):
                return line.split()[-1]
    return None


def read_particle_star(path: str | os.PathLike) -> ParticleStar:
    """Read any RELION particle STAR file into the 3.1 layout, checking what is needed."""
    path = Path(path)
    tables = read_star_tables(path)
    for name, table in tables.items():
        _check_table_layout(path, name or "data", table)
        _convert_numeric_columns(path, name or "data", table)
    if "particles" in tables:
        particles = tables["particles"].copy()
        if "optics" not in tables:
            raise InputError(path, "has data_particles but no data_optics table")
        optics = tables["optics"].copy()
        version = "5.0" if _version_comment(path) == "50001" else "3.1"
    else:
        # RELION 3.0: one table of particles with optics columns per particle.
        particles = next(iter(tables.values())).copy()
        optics, particles = _optics_from_30(path, particles)
        version = "3.0"

    if len(particles) == 0:
        raise InputError(path, "contains no particles")
    for column in REQUIRED_PARTICLE_COLUMNS:
        if column not in particles:
            raise InputError(path, f"missing required column _{column}")
    _check_optics(path, optics, particles)
    _convert_origins_to_angst(path, optics, particles)
    return ParticleStar(path=path, optics=optics, particles=particles, source_version=version)


def _check_table_layout(path: Path, name: str, table: pd.DataFrame) -> None:
    """Refuse a repeated column, or a row with fewer values than columns (a truncated or hand-edited file).

    The parser fills a short row with NaN from the cut onwards, so its last column is empty;
    the values it did read may themselves be cut (a defocus of 10 instead of 10250).
    """
    if table.shape[1] == 0:
        return
    repeated = table.columns[table.columns.duplicated()]
    if len(repeated):
        raise InputError(path, f"{name} column _{repeated[0]} appears more than once")
    short = np.flatnonzero(table.iloc[:, -1].isna().to_numpy())
    if len(short):
        words = _row_words(path, name, int(short[0]))
        if words is not None and len(words) == table.shape[1]:  # a whole row whose last value reads as NaN
            raise InputError(path, f"{name} column _{table.columns[-1]} has a non-numeric or non-finite value "
                             f"{words[-1]!r} (row {short[0] + 1})")
        raise InputError(path, f"{name} row {short[0] + 1} has fewer values than the {table.shape[1]} columns "
                         "(truncated or hand-edited file?)")


def _row_words(path: Path, name: str, row: int) -> list[str] | None:
    """The values of data row `row` of table `name` as written in the file (None if it cannot be found)."""
    import shlex

    lines = iter(path.read_text(errors="replace").splitlines())
    header = "data_" if name == "data" else f"data_{name}"
    for line in lines:
        if line.strip() == header or (name == "data" and line.startswith("data_")):
            break
    rows = []
    for line in lines:
        if line.startswith("data_"):
            break
        if line.strip() and not line.lstrip().startswith(("_", "#", "loop_")):
            rows.append(line)
    try:
        return shlex.split(rows[row]) if row < len(rows) else None
    except ValueError:
        return None


def _convert_numeric_columns(path: Path, name: str, table: pd.DataFrame) -> None:
    """Make NUMERIC_COLUMNS numbers in place (whole numbers for INTEGER_COLUMNS), or refuse the file."""
    for column in NUMERIC_COLUMNS:
        if column not in table:
            continue
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise InputError(path, f"{name} column _{column} has a non-numeric or non-finite value "
                             f"{table[column].iloc[bad[0]]!r} (row {bad[0] + 1})")
        if column in INTEGER_COLUMNS:
            bad = np.flatnonzero((values != np.round(values)) | (np.abs(values) > 2**31))
            if len(bad):
                raise InputError(path, f"{name} column _{column} must hold whole numbers, not {values[bad[0]]!r} "
                                 f"(row {bad[0] + 1})")
            table[column] = values.astype(np.int64)
        else:
            table[column] = values


def _optics_from_30(path: Path, particles: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build an optics table for a RELION 3.0 file (pixel size from magnification)."""
    if "rlnImagePixelSize" in particles:
        pixel = particles["rlnImagePixelSize"].astype(float)
    elif "rlnDetectorPixelSize" in particles and "rlnMagnification" in particles:
        pixel = particles["rlnDetectorPixelSize"].astype(float) * 1e4 / particles["rlnMagnification"].astype(float)
    else:
        raise InputError(
            path, "RELION 3.0 file without pixel size (need _rlnDetectorPixelSize and _rlnMagnification)"
        )
    keys = pd.DataFrame({"rlnImagePixelSize": pixel.round(6)})
    for column in OPTICS_COLUMNS_30:
        if column not in particles:
            raise InputError(path, f"missing required column _{column}")
        keys[column] = particles[column].astype(float)
    groups = keys.drop_duplicates().reset_index(drop=True)
    groups.insert(0, "rlnOpticsGroup", np.arange(1, len(groups) + 1))
    groups.insert(1, "rlnOpticsGroupName", [f"opticsGroup{i}" for i in groups["rlnOpticsGroup"]])
    merged = keys.merge(groups, how="left", on=list(keys.columns))
    particles = particles.drop(
        columns=[c for c in (*OPTICS_COLUMNS_30, "rlnMagnification", "rlnDetectorPixelSize", "rlnImagePixelSize") if c in particles]
    )
    particles["rlnOpticsGroup"] = merged["rlnOpticsGroup"].to_numpy()
    # Origins in pixels are converted to Å by _convert_origins_to_angst.
    groups["rlnImageDimensionality"] = 2
    return groups, particles


def _check_optics(path: Path, optics: pd.DataFrame, particles: pd.DataFrame) -> None:
    for column in ("rlnOpticsGroup", *OPTICS_COLUMNS_30):
        if column not in optics:
            raise InputError(path, f"optics table is missing column _{column}")
    if "rlnImagePixelSize" not in optics:
        raise InputError(path, "optics table is missing column _rlnImagePixelSize")
    if "rlnOpticsGroup" not in particles:
        if len(optics) != 1:
            raise InputError(path, "particles lack _rlnOpticsGroup but there are several optics groups")
        particles["rlnOpticsGroup"] = int(optics["rlnOpticsGroup"].iloc[0])
    if (optics["rlnImagePixelSize"].astype(float) <= 0).any():
        raise InputError(path, "pixel size must be positive")
    repeated = optics["rlnOpticsGroup"][optics["rlnOpticsGroup"].duplicated()]
    if len(repeated):
        raise InputError(path, f"optics group {repeated.iloc[0]} is defined more than once")
    known = set(optics["rlnOpticsGroup"].astype(int))
    used = set(particles["rlnOpticsGroup"].astype(int))
    if not used <= known:
        raise InputError(path, f"particles refer to undefined optics groups {sorted(used - known)}")
    if "rlnCtfDataAreCtfPremultiplied" in optics and (optics["rlnCtfDataAreCtfPremultiplied"].astype(int) != 0).any():
        raise InputError(path, "CTF-premultiplied particles are not supported")


def _convert_origins_to_angst(path: Path, optics: pd.DataFrame, particles: pd.DataFrame) -> None:
    pixel = pixel_size_per_particle(optics, particles)
    for axis in "XY":  # RELION 3.0 origins are in pixels
        if f"rlnOrigin{axis}" in particles and f"rlnOrigin{axis}Angst" not in particles:
            particles[f"rlnOrigin{axis}Angst"] = particles.pop(f"rlnOrigin{axis}").astype(float) * pixel
    particles.drop(columns=["rlnOriginZ"], errors="ignore", inplace=True)


def pixel_size_per_particle(optics: pd.DataFrame, particles: pd.DataFrame) -> np.ndarray:
    table = optics.set_index(optics["rlnOpticsGroup"].astype(int))["rlnImagePixelSize"].astype(float)
    return table.loc[particles["rlnOpticsGroup"].astype(int)].to_numpy()


def _numeric_column(star: ParticleStar, column: str, default: float | None) -> np.ndarray:
    particles = star.particles
    if column not in particles:
        if default is None:
            raise InputError(star.path, f"missing required column _{column}")
        return np.full(len(particles), default, dtype=np.float64)
    values = pd.to_numeric(particles[column], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0]) + 1
        raise InputError(star.path, f"column _{column} has a non-numeric or non-finite value (particle {bad})")
    return values


def _optics_column(star: ParticleStar, column: str, default: float | None) -> np.ndarray:
    optics = star.optics
    if column in star.particles:  # a particle row may override the optics group
        return _numeric_column(star, column, default)
    if column not in optics:
        if default is None:
            raise InputError(star.path, f"missing required column _{column}")
        return np.full(len(star), default)
    table = optics.set_index(optics["rlnOpticsGroup"].astype(int))[column].astype(float)
    return table.loc[star.particles["rlnOpticsGroup"].astype(int)].to_numpy()


def particle_parameters(star: ParticleStar, require_pose: bool = True, require_ctf: bool = True) -> ParticleParameters:
    """Per-particle pose, shift and CTF parameters, validated."""
    pose_default = None if require_pose else 0.0
    ctf_default = None if require_ctf else 0.0
    params = ParticleParameters(
        rot=_numeric_column(star, "rlnAngleRot", pose_default),
        tilt=_numeric_column(star, "rlnAngleTilt", pose_default),
        psi=_numeric_column(star, "rlnAnglePsi", pose_default),
        origin_x_angst=_numeric_column(star, "rlnOriginXAngst", 0.0),
        origin_y_angst=_numeric_column(star, "rlnOriginYAngst", 0.0),
        defocus_u=_numeric_column(star, "rlnDefocusU", ctf_default),
        defocus_v=_numeric_column(star, "rlnDefocusV", ctf_default),
        defocus_angle=_numeric_column(star, "rlnDefocusAngle", NEUTRAL_CTF["rlnDefocusAngle"]),
        phase_shift=_numeric_column(star, "rlnPhaseShift", NEUTRAL_CTF["rlnPhaseShift"]),
        bfactor=_numeric_column(star, "rlnCtfBfactor", NEUTRAL_CTF["rlnCtfBfactor"]),
        ctf_scale=_numeric_column(star, "rlnCtfScalefactor", NEUTRAL_CTF["rlnCtfScalefactor"]),
        voltage=_optics_column(star, "rlnVoltage", None),
        cs=_optics_column(star, "rlnSphericalAberration", None),
        amplitude_contrast=_optics_column(star, "rlnAmplitudeContrast", None),
        pixel_size=pixel_size_per_particle(star.optics, star.particles),
        optics_group=star.particles["rlnOpticsGroup"].astype(int).to_numpy(),
        random_subset=_numeric_column(star, "rlnRandomSubset", 0.0).astype(int),
    )
    if require_ctf and ((params.defocus_u <= 0).any() or (params.defocus_v <= 0).any()):
        raise InputError(star.path, "defocus values must be positive (underfocus, in Å)")
    _check_physical_ranges(star.path, params, require_ctf)
    return params


# (column, ParticleParameters field, accepted range) of the values the forward model uses.
PHYSICAL_RANGES = (
    ("rlnVoltage", "voltage", ranges.VOLTAGE_KV),
    ("rlnSphericalAberration", "cs", ranges.SPHERICAL_ABERRATION_MM),
    ("rlnAmplitudeContrast", "amplitude_contrast", ranges.AMPLITUDE_CONTRAST),
    ("rlnImagePixelSize", "pixel_size", ranges.PIXEL_SIZE_A),
    ("rlnCtfScalefactor", "ctf_scale", ranges.CTF_SCALE),
    ("rlnCtfBfactor", "bfactor", ranges.BFACTOR_A2),
)
CTF_RANGES = (("rlnDefocusU", "defocus_u"), ("rlnDefocusV", "defocus_v"))
MAX_DEFOCUS_A = 1e6  # 100 µm


def _check_physical_ranges(path: Path, params: ParticleParameters, require_ctf: bool) -> None:
    for column, field, accepted in PHYSICAL_RANGES:
        values = getattr(params, field)
        below_high = (values < accepted.high) if accepted.high_open else (values <= accepted.high)
        fine = np.isfinite(values) & (values >= accepted.low) & below_high
        if not fine.all():
            row = int(np.flatnonzero(~fine)[0])
            bound = ")" if accepted.high_open else "]"
            raise InputError(path, f"_{column} {values[row]:g} (particle {row + 1}) is outside "
                             f"[{accepted.low:g}, {accepted.high:g}{bound}")
    if require_ctf:
        for column, field in CTF_RANGES:
            values = getattr(params, field)
            if (values > MAX_DEFOCUS_A).any():
                row = int(np.flatnonzero(values > MAX_DEFOCUS_A)[0])
                raise InputError(path, f"_{column} {values[row]:g} Å (particle {row + 1}) is beyond {MAX_DEFOCUS_A:g} Å")


def particle_keys(particles: pd.DataFrame) -> list[str]:
    """A name for each particle that survives re-boxing and simulation (rlnImageName does not).

    Micrograph and coordinates when the STAR has them; otherwise the refined pose and defocus,
    which `simulate` copies unchanged from raw.star to sim.star.
    """
    located = ("rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY")
    if all(c in particles for c in located):
        return [f"{m}@{float(x):.2f},{float(y):.2f}" for m, x, y in zip(*(particles[c] for c in located))]
    columns = [c for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst",
                           "rlnDefocusU", "rlnDefocusV") if c in particles]
    values = particles[columns].to_numpy(dtype=np.float64) if columns else np.zeros((len(particles), 0))
    return [",".join(f"{v:.4f}" for v in row) for row in values]


def check_optics_supported(star: ParticleStar) -> None:
    """Refuse optics terms the forward model does not include, rather than ignore them."""
    optics = star.optics
    for column in UNSUPPORTED_OPTICS:
        if column in optics:
            values = optics[column]
            if column.endswith("Zernike"):
                nonzero = any(any(float(x) != 0 for x in str(v).strip("[]").split(",") if x) for v in values)
            else:
                nonzero = (values.astype(float) != 0).any()
            if nonzero:
                raise InputError(star.path, f"optics column _{column} (beam tilt / aberrations) is not supported; "
                                 "use --ignore-aberrations to simulate without it")
    if all(c in optics for c in MAG_MATRIX):
        mag = optics[list(MAG_MATRIX)].astype(float).to_numpy()
        if not np.allclose(mag, [1, 0, 0, 1], atol=1e-3):
            raise InputError(star.path, "anisotropic magnification (_rlnMagMat*) is not supported; "
                             "use --ignore-aberrations to simulate without it")


def parse_image_name(star: ParticleStar) -> tuple[np.ndarray, np.ndarray]:
    """Split rlnImageName ('000012@Extract/a.mrcs') into stack paths and 0-based indices."""
    names = star.particles["rlnImageName"].astype(str).to_numpy()
    indices = np.empty(len(names), dtype=np.int64)
    stacks = np.empty(len(names), dtype=object)
    for i, name in enumerate(names):
        number, sep, stack = name.partition("@")
        if not sep:
            number, stack = "1", name
        try:
            indices[i] = int(number) - 1
        except ValueError:
            raise InputError(star.path, f"particle {i + 1}: bad _rlnImageName {name!r}") from None
        if indices[i] < 0:
            raise InputError(star.path, f"particle {i + 1}: image index must start at 1 in {name!r}")
        stacks[i] = stack
    return stacks, indices


@dataclass(frozen=True)
class StackLocation:
    """Where a stack named in a STAR file was found, and by which rule.

    `relion_rule` is True when it is the file RELION reads (the name relative to the project
    folder); `other` is a different file of the same name that another rule would have taken."""

    path: Path
    relion_rule: bool
    other: Path | None = None


def locate_stack(stack: str, star_path: Path, project_dir: str | os.PathLike | None = None) -> StackLocation:
    """Find a stack named in a STAR file by RELION's rule first: relative to the project folder
    (`project_dir`, else the current directory), as RELION reads rlnImageName. Only when that file
    does not exist, the STAR file's folder and then its parents (files written by other tools, or a
    moved folder) are tried; the caller says so. `other` is the file the STAR's own folder would
    have given instead of RELION's, so the caller can say which it took."""
    primary = Path(project_dir or ".") / stack
    folder = star_path.resolve().parent
    beside, *above = [parent / stack for parent in (folder, *folder.parents[:3])]
    if primary.is_file():
        other = beside if beside.is_file() and beside.resolve() != primary.resolve() else None
        return StackLocation(primary, True, other)
    found = next((c for c in (beside, *above) if c.is_file()), None)
    if found is None:
        where = ("as an absolute path" if Path(stack).is_absolute() else
                 f"relative to {Path(project_dir or '.').resolve()}, as RELION does, and to the STAR file's folder")
        raise InputError(star_path, f"image stack {stack!r} not found (looked {where})")
    return StackLocation(found, False)


def stack_reference(stack: str | os.PathLike, project_dir: str | os.PathLike | None = None) -> str:
    """How a STAR file we write names `stack`, so that RELION run from the project folder reads exactly it.

    RELION reads rlnImageName relative to its current directory (the project folder): the name is
    relative to `project_dir` (else the current directory) when the stack lies inside it, absolute
    otherwise. Never relative to the STAR's own folder, which RELION ignores. A path that a STAR
    file cannot hold (a '#' starts a comment; quotes end a value) is refused before any work."""
    project = Path(project_dir or ".").resolve()
    target = Path(stack).resolve()
    name = target.relative_to(project).as_posix() if target.is_relative_to(project) else str(target)
    unsafe = sorted({ch for ch in name if ch in "#'\"\n"})
    if unsafe:
        raise InputError(Path(stack).parent, f"a STAR file cannot name an image stack in a path holding "
                         f"{' or '.join(repr(ch) for ch in unsafe)} (in a STAR file '#' starts a comment and a quote ends a value); choose another --out")
    return name


def _format_value(value) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return f"{value:.6f}"
        return f"{value:.6g}" if abs(value) >= 1e6 or (value != 0 and abs(value) < 1e-4) else f"{value:.6f}"
    text = str(value)
    return text if text and not any(ch.isspace() for ch in text) else f'"{text}"'


def format_table(name: str, table: pd.DataFrame) -> str:
    lines = [f"data_{name}", "", "loop_"]
    lines += [f"_{column} #{i}" for i, column in enumerate(table.columns, start=1)]
    columns = [table[c].to_numpy() for c in table.columns]
    for row in zip(*columns):
        lines.append(" ".join(_format_value(v) for v in row))
    return "\n".join(lines) + "\n\n"


def write_star(path: str | os.PathLike, tables: dict[str, pd.DataFrame]) -> None:
    """Write named tables as a RELION 3.1 STAR file (each under its `# version 30001` line), atomically.

    A NaN or infinite number stops the run: RELION would read it as data (or fail on it later)."""
    for name, table in tables.items():
        for column in table.columns:
            values = table[column].to_numpy()
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                row = int(np.flatnonzero(~np.isfinite(values))[0]) + 1
                raise OutputError(path, f"{name} column _{column} came out NaN or infinite (row {row}); {NOT_PUBLISHED}")
    atomic_write_text(Path(path), "\n" + "".join(f"# version 30001\n\n{format_table(name, table)}"
                                                  for name, table in tables.items()))


def write_particle_star(path: str | os.PathLike, optics: pd.DataFrame, particles: pd.DataFrame) -> None:
    """Write a RELION 3.1 particle STAR file atomically, every CTF term explicit (see NEUTRAL_CTF).

    Particles with a defocus get the neutral value of each CTF column they lack; the optics table
    gets rlnImageDimensionality 2 if it lacks it (the callers set rlnImageSize, which they know)."""
    if "rlnDefocusU" in particles:
        particles = particles.assign(**{c: v for c, v in NEUTRAL_CTF.items() if c not in particles})
    if "rlnImageDimensionality" not in optics:
        optics = optics.assign(rlnImageDimensionality=2)
    write_star(path, {"optics": optics, "particles": particles})


def read_coordinate_star(path: Path) -> pd.DataFrame:
    """The table of a RELION coordinate STAR file (`cryorefine scene`'s or a picker's)."""
    table = next(iter(read_star_tables(path).values()))
    for column in ("rlnCoordinateX", "rlnCoordinateY"):
        if column not in table:
            raise InputError(path, f"no {column} column")
    return table
