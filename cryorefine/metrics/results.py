"""The scores of `cryorefine evaluate` as typed results, and their JSON layout.

Readers (the command, the demo, the docs tables) use attributes, so a renamed or missing score fails where
it is read, not as a None in a table. `to_dict` writes exactly the layout of metrics.json, downstream.json
and picking.json that earlier releases wrote, and `from_dict` reads it back, naming the first missing field.
Torch-free, so reading the results needs no torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from cryorefine.artifacts import EvaluationFolder
from cryorefine.errors import InputError
from cryorefine.metrics.config import DenoiserConfig

Result = TypeVar("Result")


class MalformedMetrics(ValueError):
    """A metrics dict that lacks a field (or holds something else where an object belongs)."""


def _object(values: Any, where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise MalformedMetrics(f"field {where!r} is {type(values).__name__}, not an object")
    return values


def _list(values: Any, where: str) -> list[Any]:
    if not isinstance(values, list):
        raise MalformedMetrics(f"field {where!r} is {type(values).__name__}, not a list")
    return values


def _field(values: dict[str, Any], name: str, where: str) -> Any:
    if name not in values:
        path = f"{where}.{name}" if where else name
        raise MalformedMetrics(f"missing field {path!r}")
    return values[name]


def _flat(cls, values: Any, where: str):
    """An instance of a dataclass whose fields are plain JSON values, named as its keys."""
    values = _object(values, where)
    return cls(**{f.name: _field(values, f.name, where) for f in fields(cls)})


class _FlatRecord:
    """A result whose fields are plain JSON values under their own names; `where` names it in errors."""

    @classmethod
    def from_dict(cls, values: Any, where: str):
        return _flat(cls, values, where)


def _optional(cls, values: Any, where: str):
    return None if values is None else cls.from_dict(values, where)


def _read(path: Path, parse: Callable[[Any], Result], what: str) -> Result:
    """parse(the JSON in path); a missing or malformed file is one InputError naming it."""
    try:
        return parse(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, MalformedMetrics) as exc:
        raise InputError(path, f"not readable as {what} ({exc})") from None


@dataclass(frozen=True)
class RpsdScores(_FlatRecord):
    """Distances of fake from raw radial power spectra: whole images, inside and outside the particle mask."""

    l1: float
    mse: float
    inside_l1: float
    inside_mse: float
    outside_l1: float
    outside_mse: float


@dataclass(frozen=True)
class PixelErrors(_FlatRecord):
    """Paired pixel errors of fake against raw, and the distance of their pooled pixel-value distributions."""

    l1: float
    mse: float
    wasserstein1: float


@dataclass(frozen=True)
class Moments(_FlatRecord):
    """Of all pixel values of a set."""

    mean: float
    std: float
    skewness: float
    excess_kurtosis: float


@dataclass(frozen=True)
class SetMoments:
    fake: Moments
    raw: Moments

    @classmethod
    def from_dict(cls, values: Any, where: str = "moments") -> SetMoments:
        values = _object(values, where)
        return cls(*(Moments.from_dict(_field(values, side, where), f"{where}.{side}") for side in ("fake", "raw")))


@dataclass(frozen=True)
class ClassifierSpread(_FlatRecord):
    """Two-sample classifier test repeated with seeds seed, seed+1, ...: ROC AUC mean, std and each run's."""

    auc: float
    auc_std: float
    aucs: list[float]
    repeats: int
    n_train: int
    n_test: int
    steps: int


@dataclass(frozen=True)
class FrcComparison(_FlatRecord):
    """Fourier ring correlation of fake and of raw with the clean sim, per ring from DC to Nyquist."""

    fake_vs_sim: list[float]
    raw_vs_sim: list[float]
    mean_abs_difference: float


@dataclass(frozen=True)
class NoisePowerComparison(_FlatRecord):
    """Noise power spectra of the residuals fake − sim and raw − sim, and their mean log distance."""

    fake_minus_sim: list[float]
    raw_minus_sim: list[float]
    log_l1: float


@dataclass(frozen=True)
class RpsdCurves(_FlatRecord):
    """Set-mean RPSD curves over `frequency` (ring centres, fraction of Nyquist), for plots."""

    frequency: list[float]
    rpsd_fake: list[float]
    rpsd_raw: list[float]
    rpsd_sim: list[float] | None


@dataclass(frozen=True)
class EvaluatedFiles(_FlatRecord):
    """The STAR files `evaluate particles` scored, and the pixel size it read from raw's optics."""

    fake: str
    raw: str
    sim: str | None
    pixel_size: float


@dataclass(frozen=True)
class ParticleMetrics:
    """All realism metrics of one fake set against its paired raw set (metrics.json of `evaluate particles`).

    `frc`, `noise_power` and `curves.rpsd_sim` are None when no clean sim was given; `inputs` is None
    unless the command recorded which files it scored.
    """

    n_images: int
    box: int
    seed: int
    mask_diameter_px: float
    rpsd: RpsdScores
    pixel: PixelErrors
    moments: SetMoments
    classifier: ClassifierSpread
    frc: FrcComparison | None
    noise_power: NoisePowerComparison | None
    curves: RpsdCurves
    inputs: EvaluatedFiles | None = None

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if self.inputs is None:
            del values["inputs"]
        return values

    @classmethod
    def from_dict(cls, values: Any) -> ParticleMetrics:
        """From `to_dict`'s layout; a missing field raises MalformedMetrics naming it (e.g. 'rpsd.l1')."""
        values = _object(values, "")
        take = lambda name: _field(values, name, "")  # noqa: E731
        return cls(n_images=take("n_images"), box=take("box"), seed=take("seed"),
                   mask_diameter_px=take("mask_diameter_px"), rpsd=RpsdScores.from_dict(take("rpsd"), "rpsd"),
                   pixel=PixelErrors.from_dict(take("pixel"), "pixel"), moments=SetMoments.from_dict(take("moments")),
                   classifier=ClassifierSpread.from_dict(take("classifier"), "classifier"),
                   frc=_optional(FrcComparison, take("frc"), "frc"),
                   noise_power=_optional(NoisePowerComparison, take("noise_power"), "noise_power"),
                   curves=RpsdCurves.from_dict(take("curves"), "curves"),
                   inputs=_optional(EvaluatedFiles, values.get("inputs"), "inputs"))

    @classmethod
    def read(cls, folder: Path) -> ParticleMetrics:
        """The metrics of an `evaluate particles` folder; a missing or malformed file is one InputError naming it."""
        return _read(Path(folder) / EvaluationFolder.METRICS, cls.from_dict, "particle metrics")


@dataclass(frozen=True)
class MicrographScores:
    """One micrograph set against held-out real micrograph tiles; `mask_preservation` is None without scenes."""

    rpsd_l1: float
    classifier_auc: float
    classifier_auc_std: float
    classifier_aucs: list[float]
    tiles_per_class: int
    noise_power: list[float]  # per ring from DC to Nyquist
    mask_preservation: float | None = None

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if self.mask_preservation is None:
            del values["mask_preservation"]
        return values

    @classmethod
    def from_dict(cls, values: Any, where: str) -> MicrographScores:
        values = _object(values, where)
        required = [f.name for f in fields(cls) if f.name != "mask_preservation"]
        return cls(**{name: _field(values, name, where) for name in required},
                   mask_preservation=values.get("mask_preservation"))


@dataclass(frozen=True)
class HeldOutReal(_FlatRecord):
    """The real micrographs' held-out strips the sets were scored against, cut into `tiles` tiles."""

    files: list[str]
    holdout: float
    tiles: int
    noise_power: list[float]


@dataclass(frozen=True)
class MicrographMetrics:
    """metrics.json of `evaluate micrographs`: each set's scores under its name, and the real data under "real"."""

    sets: dict[str, MicrographScores]
    real: HeldOutReal

    def to_dict(self) -> dict[str, Any]:
        return {**{name: scores.to_dict() for name, scores in self.sets.items()}, "real": asdict(self.real)}

    @classmethod
    def from_dict(cls, values: Any) -> MicrographMetrics:
        values = _object(values, "")
        return cls(sets={name: MicrographScores.from_dict(scores, name) for name, scores in values.items()
                         if name != "real"},
                   real=HeldOutReal.from_dict(_field(values, "real", ""), "real"))


@dataclass(frozen=True)
class DenoisingScore(_FlatRecord):
    """A denoiser's output on one test set against the paired sims (see cryorefine.metrics.downstream)."""

    correlation: float  # mean over particles of Pearson(denoised, sim)
    correlation_sem: float  # its standard error over particles
    frc_mean: float  # set FRC(denoised, sim), mean from DC to Nyquist
    frc: list[float]
    n_images: int
    correlation_std: float = 0.0  # over the denoiser's training repeats
    gap_closed: float | None = None  # of `correlation`, between the floor and the oracle
    gap_closed_std: float | None = None
    repeats: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _denoiser_config(values: Any, where: str) -> DenoiserConfig:
    """The recipe as the command ran it: JSON has no tuples, so the dilations come back as a list."""
    config = _flat(DenoiserConfig, values, where)
    return replace(config, dilations=tuple(config.dilations))


@dataclass(frozen=True)
class DenoisingReport:
    """downstream.json of `evaluate denoising`: scores[test][training set] and what they were made from.

    `oracle` and `floor` name the training sets that bound the gap closed; None when not among them.
    """

    scores: dict[str, dict[str, DenoisingScore]]
    oracle: str | None
    floor: str | None
    denoiser: DenoiserConfig  # the recipe every training set got
    training_sets: dict[str, str]  # name -> STAR of its noisy particles
    clean: str  # STAR of the clean sims that pair with every training set
    tests: dict[str, list[str]]  # name -> [raw STAR, sim STAR]

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["denoiser"]["dilations"] = list(self.denoiser.dilations)  # as the JSON reads back
        return values

    @classmethod
    def from_dict(cls, values: Any) -> DenoisingReport:
        """From `to_dict`'s layout; a missing field raises MalformedMetrics naming it (e.g. 'denoiser.steps')."""
        values = _object(values, "")
        take = lambda name: _field(values, name, "")  # noqa: E731
        return cls(scores={test: {name: DenoisingScore.from_dict(score, f"scores.{test}.{name}")
                                  for name, score in _object(by_set, f"scores.{test}").items()}
                           for test, by_set in _object(take("scores"), "scores").items()},
                   oracle=take("oracle"), floor=take("floor"), denoiser=_denoiser_config(take("denoiser"), "denoiser"),
                   training_sets=_object(take("training_sets"), "training_sets"), clean=take("clean"),
                   tests=_object(take("tests"), "tests"))

    @classmethod
    def read(cls, folder: Path) -> DenoisingReport:
        """The report of an `evaluate denoising` folder; a missing or malformed file is one InputError naming it."""
        return _read(Path(folder) / EvaluationFolder.DOWNSTREAM, cls.from_dict, "a denoising report")


def read_denoising_scores(folder: Path) -> dict[str, dict[str, DenoisingScore]]:
    """scores[test][training set] of an `evaluate denoising` folder; a missing or malformed file is one
    InputError naming it."""
    return DenoisingReport.read(folder).scores


@dataclass(frozen=True)
class PickingRun(_FlatRecord):
    """One picker's picks on all held-out micrographs, pooled (see cryorefine.metrics.picking.evaluate_picks)."""

    average_precision: float  # recall is relative to all true particles, so missed ones lower it
    n_true: int
    n_picks: int
    n_matched: int
    max_recall: float


@dataclass(frozen=True)
class PickingScores:
    """The pickers trained on one set, one per seed, scored on the same held-out micrographs: means over `runs`."""

    average_precision: float
    average_precision_std: float  # over the seeds; 0 with one
    max_recall: float
    n_true: int
    n_matched: int  # rounded mean over the seeds
    runs: list[PickingRun]
    n_train_particles: int
    seconds: float  # to train and score all the set's pickers

    @classmethod
    def from_dict(cls, values: Any, where: str) -> PickingScores:
        values = _object(values, where)
        parsed = {f.name: _field(values, f.name, where) for f in fields(cls)}
        runs = _list(parsed.pop("runs"), f"{where}.runs")
        return cls(**parsed, runs=[PickingRun.from_dict(run, f"{where}.runs[{i}]") for i, run in enumerate(runs)])


@dataclass(frozen=True)
class PickerSettings(_FlatRecord):
    """The picker recipe every training set got (see cryorefine.metrics.config.PickerConfig)."""

    downsample: float
    label_radius_px: float
    steps: int
    pretrained: bool
    seed: int  # of each set's first picker; the k-th has seed + k
    repeats: int  # pickers per training set


@dataclass(frozen=True)
class PickingReport:
    """picking.json of `evaluate picking`: each training set's scores under its name, on the `test` micrographs."""

    results: dict[str, PickingScores]
    test: str  # the folder of held-out micrographs with their coordinates
    particle_diameter_a: float
    picker: PickerSettings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> PickingReport:
        """From `to_dict`'s layout; a missing field raises MalformedMetrics naming it (e.g. 'picker.steps')."""
        values = _object(values, "")
        take = lambda name: _field(values, name, "")  # noqa: E731
        return cls(results={name: PickingScores.from_dict(scores, f"results.{name}")
                            for name, scores in _object(take("results"), "results").items()},
                   test=take("test"), particle_diameter_a=take("particle_diameter_a"),
                   picker=PickerSettings.from_dict(take("picker"), "picker"))

    @classmethod
    def read(cls, folder: Path) -> PickingReport:
        """The report of an `evaluate picking` folder; a missing or malformed file is one InputError naming it."""
        return _read(Path(folder) / EvaluationFolder.PICKING, cls.from_dict, "a picking report")
