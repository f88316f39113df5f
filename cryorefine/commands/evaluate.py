"""Score realistic particles or micrographs against real ones: four questions, four subcommands.

  particles  How close are fake particles to real ones? Rows of --fake, --raw and --sim are paired by
             order (row i is the same particle in each): same count, same box. Writes DIR/metrics.json
             (RPSD L1/MSE on whole images and inside/outside a soft particle mask, pixel L1/MSE and
             Wasserstein-1, moments, classifier two-sample ROC AUC, and with --sim the FRC of fake and raw
             with the clean sim and their residual noise power spectra) and plots in DIR/plots/.
  micrographs  How close are micrograph sets (each DIR in the layout of `cryorefine translate apply` or
             `cryorefine scene`) to the held-out strip of the real micrograph(s), the columns `translate
             train` never saw? RPSD L1, noise power spectra, classifier AUC (mean and std over seeds) and,
             with --scenes, mask preservation. Writes DIR/metrics.json and plots.
  denoising  Does a denoiser trained on a set work on real particles? One small denoiser with a fixed
             recipe per training set (NAME=STAR: noisy particles whose rows pair with --clean, e.g. `apply`
             run on pairs/sim.star; the real pairs/raw.star itself is the oracle), applied to the held-out
             --raw particles and scored against their --sim: mean correlation, FRC and the gap closed
             between --floor and --oracle. Writes DIR/downstream.json (see cryorefine.metrics.downstream).
  picking  Does a picker trained on a set find real particles? One topaz picker per training set
             (micrographs with their coords_NNN.star), each scored by average precision on the same
             held-out micrographs with known coordinates. Writes DIR/picking.json. Needs topaz-em
             (installed by `make test`).

The flag form of earlier releases (`cryorefine evaluate --fake ...`, `--micrographs`, `--denoise ...`,
`--picking-train ...`) still works for one release, with a line saying the new spelling.

Examples:
  cryorefine evaluate particles --fake applied/particles.star --raw pairs/raw.star --sim pairs/sim.star --out eval
  cryorefine evaluate micrographs --sets gaussian=gauss translated=trans --real real.mrc --scenes scene --out eval
  cryorefine evaluate denoising --train oracle=pairs/raw.star gaussian=white/particles.star gan=applied/particles.star \
      --clean pairs/sim.star --raw test/raw.star --sim test/sim.star --out downstream
  cryorefine evaluate picking --train gaussian=train_gauss translated=train_trans --test test \
      --particle-diameter 110 --out picking
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cryorefine.artifacts import EvaluationFolder
from cryorefine.commands.options import action_help, add_project_dir
from cryorefine.errors import InputError, SettingsError
from cryorefine.metrics.config import (PICKING_REPEATS, ClassifierConfig, DenoiserConfig, MicrographScoreConfig,
                                       PickerConfig)
from cryorefine.metrics.results import (DenoisingReport, EvaluatedFiles, HeldOutReal, MicrographMetrics,
                                        ParticleMetrics, PickerSettings, PickingReport)

if TYPE_CHECKING:  # torch-backed; imported where used, so that --help and argument errors answer at once
    from cryorefine.io.atomic import StagedOutputDir
    from cryorefine.io.mrc import ParticleImages

log = logging.getLogger(__name__)

# The flag form of earlier releases: old flag -> (subcommand, its flag). Flags not listed keep their name.
LEGACY_FLAGS = {
    "--micrographs": ("micrographs", "--sets"), "--real": ("micrographs", "--real"),
    "--holdout": ("micrographs", "--holdout"), "--scenes": ("micrographs", "--scenes"),
    "--tile": ("micrographs", "--tile"),
    "--denoise": ("denoising", "--train"), "--denoise-clean": ("denoising", "--clean"),
    "--denoise-test": ("denoising", "--test"), "--denoise-oracle": ("denoising", "--oracle"),
    "--denoise-floor": ("denoising", "--floor"), "--denoise-steps": ("denoising", "--steps"),
    "--denoise-repeats": ("denoising", "--repeats"),
    "--picking-train": ("picking", "--train"), "--picking-test": ("picking", "--test"),
    "--particle-diameter": ("picking", "--particle-diameter"), "--picking-steps": ("picking", "--steps"),
    "--picking-repeats": ("picking", "--repeats"), "--picking-pretrained": ("picking", "--pretrained"),
    "--no-picking-pretrained": ("picking", "--no-pretrained"),
}
SUBCOMMANDS = ("particles", "micrographs", "denoising", "picking")


def upgrade_flag_form(argv: list[str]) -> list[str]:
    """`evaluate --FLAG ...` (earlier releases) as `evaluate SUBCOMMAND ...`, saying so on stderr; any other
    command line unchanged. The subcommand is the one the flags belong to (denoising, picking, micrographs,
    else particles), as the flag form chose it."""
    if argv[:1] != ["evaluate"]:
        return argv
    rest = argv[1:]
    # --threads, which every command takes, may come before the old flags (the Scipion plugin put it there).
    common = rest[:1] if rest[:1] and rest[0].startswith("--threads=") else rest[:2] if rest[:1] == ["--threads"] else []
    rest = rest[len(common):]
    if not rest or not rest[0].startswith("--") or rest[0] == "--help":
        return argv
    chosen = {LEGACY_FLAGS[word.partition("=")[0]][0] for word in rest if word.partition("=")[0] in LEGACY_FLAGS}
    action = next((name for name in ("denoising", "picking", "micrographs") if name in chosen), "particles")
    upgraded = ["evaluate", action, *common]
    for word in rest:
        flag, equals, value = word.partition("=")
        if flag in LEGACY_FLAGS and LEGACY_FLAGS[flag][0] == action:
            word = LEGACY_FLAGS[flag][1] + equals + value
        upgraded.append(word)
    print(f"cryorefine evaluate: the flag form is deprecated and goes in the next release; "
          f"this is: cryorefine {' '.join(upgraded)}", file=sys.stderr)
    return upgraded


def _common(parser: argparse.ArgumentParser, seed_of: str) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help=f"seed of the {seed_of} (default 0)")


def _classifier_options(parser: argparse.ArgumentParser, steps: int) -> None:
    parser.add_argument("--classifier-steps", type=int, default=steps, metavar="N",
                        help=f"training steps of the classifier test (default {steps})")
    parser.add_argument("--classifier-repeats", type=int, default=ClassifierConfig.repeats, metavar="N",
                        help="classifier tests per set, each with its own seed, split and network; the AUC is "
                        "reported as mean ± std (default %(default)s)")


def add_args(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="WHAT")

    def subcommand(name: str, summary: str, run) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=summary, description=action_help(__doc__, "evaluate", name),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(evaluate=run)
        return sub

    particles = subcommand("particles", "score fake particles against real ones", evaluate_particles)
    particles.add_argument("--fake", required=True, type=Path, help="STAR file of the images to score")
    particles.add_argument("--name", help="what --fake is, in plot titles and legends (default: its folder's name)")
    particles.add_argument("--raw", required=True, type=Path, help="STAR file of the real images, same rows")
    particles.add_argument("--sim", type=Path,
                           help="STAR file of the clean simulations, same rows (enables FRC and noise spectra)")
    particles.add_argument("--mask-diameter", type=float, metavar="A",
                           help="particle mask diameter in Å for inside/outside RPSD (default: 60%% of the box)")
    particles.add_argument("--max-images", type=int, default=1000, metavar="N",
                           help="score only the first N pairs (default 1000)")
    _classifier_options(particles, ClassifierConfig.steps)
    _common(particles, "classifier test")
    add_project_dir(particles)

    micrographs = subcommand("micrographs", "score micrograph sets against held-out real micrographs",
                             evaluate_micrographs)
    micrographs.add_argument("--sets", required=True, nargs="+", metavar="NAME=DIR", help="micrograph sets to score")
    micrographs.add_argument("--real", required=True, nargs="+", type=Path,
                             help="real micrograph(s) the translators trained on")
    micrographs.add_argument("--holdout", type=float, default=0.25,
                             help="held-out fraction of each real micrograph's columns, as in training (default 0.25)")
    micrographs.add_argument("--scenes", type=Path, help="the scene folder the sets were made from (mask preservation)")
    micrographs.add_argument("--tile", type=int, default=MicrographScoreConfig.tile, help="tile size in pixels")
    _classifier_options(micrographs, MicrographScoreConfig.classifier_steps)
    _common(micrographs, "classifier test")

    denoising = subcommand("denoising", "train a denoiser on each set, score it on real particles", evaluate_downstream)
    denoising.add_argument("--train", required=True, nargs="+", metavar="NAME=STAR",
                           help="training sets: noisy particles whose rows pair with --clean")
    denoising.add_argument("--clean", required=True, type=Path, metavar="STAR", help="the clean sims of the training sets")
    denoising.add_argument("--raw", required=True, type=Path, help="held-out real particles (the test set)")
    denoising.add_argument("--sim", required=True, type=Path, help="their clean simulations, same rows")
    denoising.add_argument("--test", nargs="+", default=[], metavar="NAME=RAW_STAR,SIM_STAR",
                           help="more real test sets (the first is --raw/--sim, named held-out)")
    denoising.add_argument("--oracle", default="oracle", metavar="NAME",
                           help="the training set of real particles: the ceiling of gap closed (default: oracle)")
    denoising.add_argument("--floor", default="gaussian", metavar="NAME",
                           help="the white-noise training set: the floor of gap closed (default: gaussian)")
    denoising.add_argument("--steps", type=int, default=DenoiserConfig.steps, metavar="N",
                           help=f"training steps of each denoiser (default {DenoiserConfig.steps})")
    denoising.add_argument("--repeats", type=int, default=DenoiserConfig.repeats, metavar="N",
                           help="denoisers per set, each with its own seed; scores are mean ± std (default %(default)s)")
    _common(denoising, "denoisers")
    add_project_dir(denoising)

    picking = subcommand("picking", "train a picker on each micrograph set, score it on held-out micrographs",
                         evaluate_picking)
    picking.add_argument("--train", required=True, nargs="+", metavar="NAME=DIR",
                         help="micrograph sets with coords_NNN.star to train one picker each")
    picking.add_argument("--test", required=True, type=Path, metavar="DIR",
                         help="held-out micrographs with coords_NNN.star")
    picking.add_argument("--particle-diameter", required=True, type=float, metavar="A", help="particle diameter in Å")
    picking.add_argument("--steps", type=int, default=PickerConfig.steps, help="picker training steps")
    picking.add_argument("--repeats", type=int, default=PICKING_REPEATS, metavar="N",
                         help="pickers per training set, each with its own seed; AP is reported as mean ± std "
                         "(default %(default)s)")
    picking.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=PickerConfig.pretrained,
                         help="start from topaz's pretrained detector (default: no, so only the training set counts)")
    _common(picking, "pickers")


def _open(path: Path, project_dir: Path | None) -> ParticleImages:
    from cryorefine.io.mrc import ParticleImages
    from cryorefine.io.star import read_particle_star

    return ParticleImages(read_particle_star(path), project_dir)


def _check_paired(reference: ParticleImages, other: ParticleImages) -> None:
    if len(other) != len(reference):
        raise InputError(other.star.path, f"has {len(other)} particles but {reference.star.path} has "
                         f"{len(reference)}; evaluate pairs rows by order")
    if other.box != reference.box:
        raise InputError(other.star.path, f"box {other.box} differs from {reference.box} in {reference.star.path}")


def _inputs(args: argparse.Namespace) -> tuple[list, list]:
    """(files, folders) this run reads, which its --out must not replace."""
    named = [value.partition("=")[2] for value in getattr(args, "sets", None) or getattr(args, "train", None) or []]
    if args.action == "particles":
        return [args.fake, args.raw, args.sim], []
    if args.action == "micrographs":
        return list(args.real), [args.scenes, *named]
    if args.action == "denoising":
        return [args.clean, args.raw, args.sim, *named], []
    return [], [args.test, *named]


def main(args: argparse.Namespace) -> None:
    from cryorefine.io.atomic import refuse_output_over_inputs

    files, folders = _inputs(args)
    refuse_output_over_inputs(args.out, files=files, folders=folders)
    args.evaluate(args)


def evaluate_particles(args: argparse.Namespace) -> None:
    from cryorefine.io.atomic import StagedOutputDir, write_json
    from cryorefine.metrics.report import evaluate_sets

    if args.max_images < 4:
        raise SettingsError("--max-images must be at least 4 (the classifier test needs pairs to split)")
    raw = _open(args.raw, args.project_dir)
    fake = _open(args.fake, args.project_dir)
    _check_paired(raw, fake)
    sim = None
    if args.sim is not None:
        sim = _open(args.sim, args.project_dir)
        _check_paired(raw, sim)
    n = min(len(raw), args.max_images)
    if n < 4:
        raise InputError(args.raw, f"has {n} particles; the classifier test needs at least 4")
    rows = np.arange(n)
    raw_images, fake_images = raw.read(rows), fake.read(rows)
    sim_images = None if sim is None else sim.read(rows)

    pixel_size = raw.star.pixel_size
    diameter_px = None if args.mask_diameter is None else args.mask_diameter / pixel_size
    metrics = evaluate_sets(fake_images, raw_images, sim_images, mask_diameter_px=diameter_px, seed=args.seed,
                            classifier=ClassifierConfig(steps=args.classifier_steps, repeats=args.classifier_repeats))
    metrics = replace(metrics, inputs=EvaluatedFiles(fake=str(args.fake), raw=str(args.raw),
                                                     sim=None if args.sim is None else str(args.sim),
                                                     pixel_size=pixel_size))

    with StagedOutputDir(args.out) as out:
        write_json(out.path(EvaluationFolder.METRICS), metrics.to_dict())
        name = args.name or args.fake.resolve().parent.name
        _write_plots(out, metrics, fake_images, raw_images, sim_images, name,
                     f"{n} particles of {args.raw.parent.name}/{args.raw.name}")
    log.info("RPSD L1 %.4f, classifier AUC %.3f ± %.3f (%d seeds); metrics in %s", metrics.rpsd.l1,
             metrics.classifier.auc, metrics.classifier.auc_std, metrics.classifier.repeats,
             args.out / EvaluationFolder.METRICS)


def _write_plots(out: StagedOutputDir, metrics: ParticleMetrics, fake: np.ndarray, raw: np.ndarray,
                 sim: np.ndarray | None, name: str, data: str) -> None:
    from cryorefine import plots

    curves = metrics.curves
    rpsd = {name: np.array(curves.rpsd_fake), "raw": np.array(curves.rpsd_raw)}
    if sim is not None:
        rpsd["sim"] = np.array(curves.rpsd_sim)
    plots.plot_rpsd_curves(out.path("plots/rpsd.png"), rpsd, title=f"RPSD: {name} vs raw, {data}")
    plots.plot_histograms(out.path("plots/histograms.png"), {name: fake, "raw": raw},
                          title=f"Pixel values: {name} vs raw, {data}")
    if sim is None:
        return
    frequency = np.array(curves.frequency)
    plots.plot_curves(out.path("plots/frc.png"), frequency,
                      {f"{name} vs sim": metrics.frc.fake_vs_sim, "raw vs sim": metrics.frc.raw_vs_sim},
                      "spatial frequency / Nyquist", "FRC with the clean sim", title=f"FRC: {name}, {data}")
    plots.plot_curves(out.path("plots/noise_power.png"), frequency,
                      {f"{name} − sim": metrics.noise_power.fake_minus_sim,
                       "raw − sim": metrics.noise_power.raw_minus_sim},
                      "spatial frequency / Nyquist", "residual noise power", log_y=True,
                      title=f"Noise power: {name} vs raw, {data}")
    plots.plot_panels(out.path("plots/panels.png"), sim, fake, raw, fake_label=name,
                      title=f"sim, {name} and raw: {data}")


def evaluate_downstream(args: argparse.Namespace) -> None:
    from cryorefine.io.atomic import StagedOutputDir, write_json
    from cryorefine.metrics.downstream import downstream_scores

    clean = _open(args.clean, args.project_dir)
    training_paths = _named_folders(args.train, "--train", "STAR")
    training = {}
    for name, path in training_paths.items():
        noisy = _open(path, args.project_dir)
        _check_paired(clean, noisy)
        training[name] = noisy
    tests = {"held-out": (args.raw, args.sim)}
    for value in args.test:
        name, sep, pair = value.partition("=")
        raw_path, comma, sim_path = pair.partition(",")
        if not sep or not name or not comma or name in tests:
            raise SettingsError(f"--test {value!r}: expected NAME=RAW_STAR,SIM_STAR with a new NAME")
        tests[name] = (Path(raw_path), Path(sim_path))
    test_images = {}
    for name, (raw_path, sim_path) in tests.items():
        raw, sim = _open(raw_path, args.project_dir), _open(sim_path, args.project_dir)
        _check_paired(raw, sim)
        if raw.box != clean.box:
            raise InputError(raw_path, f"box {raw.box} differs from {clean.box} of {args.clean}")
        rows = np.arange(len(raw))
        test_images[name] = (raw.read(rows), sim.read(rows))
    rows = np.arange(len(clean))
    clean_images = clean.read(rows)
    training_images = {name: (images.read(rows), clean_images) for name, images in training.items()}
    oracle = args.oracle if args.oracle in training else None
    floor = args.floor if args.floor in training else None
    config = DenoiserConfig(steps=args.steps, seed=args.seed, repeats=args.repeats)
    try:
        scores = downstream_scores(training_images, test_images, oracle, floor, config)
    except ValueError as exc:  # a constant or too small set
        raise InputError(args.clean, f"downstream score: {exc}") from None
    report = DenoisingReport(scores=scores, oracle=oracle, floor=floor, denoiser=config,
                             training_sets={name: str(path) for name, path in training_paths.items()},
                             clean=str(args.clean),
                             tests={name: [str(path) for path in pair] for name, pair in tests.items()})
    with StagedOutputDir(args.out) as out:
        write_json(out.path(EvaluationFolder.DOWNSTREAM), report.to_dict())
    for test, by_method in report.scores.items():
        for name, score in by_method.items():
            gap = "" if score.gap_closed is None else f", gap closed {score.gap_closed:.2f} ± {score.gap_closed_std:.2f}"
            log.info("%s, denoiser trained on %s: correlation %.4f ± %.4f (%d seeds), FRC %.3f%s", test, name,
                     score.correlation, score.correlation_std, score.repeats, score.frc_mean, gap)


def _named_folders(values: list[str], option: str, what: str = "DIR") -> dict[str, Path]:
    named = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise SettingsError(f"{option} {value!r}: expected NAME={what}")
        if name in named:
            raise SettingsError(f"{option}: the name {name!r} is given twice")
        named[name] = Path(folder)
    return named


def evaluate_micrographs(args: argparse.Namespace) -> None:
    from cryorefine import plots
    from cryorefine.io.atomic import StagedOutputDir, write_json
    from cryorefine.metrics.micrographs import grid_tiles, read_micrograph_set, score_set, tile_noise_power
    from cryorefine.unpaired.data import real_micrograph, standardise, synthetic_scenes

    sets = {name: read_micrograph_set(folder) for name, folder in _named_folders(args.sets, "--sets").items()}
    first = next(iter(sets.values()))
    for micrograph_set in sets.values():
        if abs(micrograph_set.pixel_size - first.pixel_size) > 1e-3 * first.pixel_size:
            raise InputError(micrograph_set.folder, f"pixel size {micrograph_set.pixel_size:.4g} Å differs from "
                             f"{first.pixel_size:.4g} Å in {first.folder}")
    real = [standardise(real_micrograph(path, first.pixel_size, args.holdout)[1]) for path in args.real]
    config = MicrographScoreConfig(tile=args.tile, classifier_steps=args.classifier_steps,
                                   classifier_repeats=args.classifier_repeats, seed=args.seed)
    try:
        real_tiles = grid_tiles(real, config.tile)
    except ValueError as exc:
        raise InputError(args.real[0], f"held-out strip too small: {exc}") from None
    cleans = synthetic_scenes(args.scenes)[0] if args.scenes else None
    scores, images = {}, {}
    for name, micrograph_set in sets.items():
        outputs = [standardise(image) for image in micrograph_set.images]
        set_cleans = None
        if cleans is not None and micrograph_set.masks is not None:
            if max(int(i) for i in micrograph_set.indices) >= len(cleans):
                raise InputError(micrograph_set.folder, f"has micrographs beyond the {len(cleans)} of {args.scenes}")
            set_cleans = [cleans[int(i)][: o.shape[0], : o.shape[1]] for i, o in zip(micrograph_set.indices, outputs)]
        try:
            scores[name] = score = score_set(outputs, real_tiles, config, set_cleans, micrograph_set.masks)
        except ValueError as exc:
            raise InputError(micrograph_set.folder, str(exc)) from None
        images[name] = outputs[0]
        log.info("%s: RPSD L1 %.3f, classifier AUC %.3f ± %.3f%s", name, score.rpsd_l1, score.classifier_auc,
                 score.classifier_auc_std,
                 "" if score.mask_preservation is None else f", mask preservation {score.mask_preservation:.3f}")
    metrics = MicrographMetrics(sets=scores, real=HeldOutReal(files=[str(p) for p in args.real], holdout=args.holdout,
                                                              tiles=len(real_tiles),
                                                              noise_power=tile_noise_power(real_tiles).tolist()))
    images["real (held out)"] = real[0]
    with StagedOutputDir(args.out) as out:
        write_json(out.path(EvaluationFolder.METRICS), metrics.to_dict())
        tiles = {name: grid_tiles([image], config.tile).numpy() for name, image in images.items()}
        pixel = f"{first.pixel_size:.3g}"
        data = f"{config.tile}-px tiles, held-out part of {', '.join(path.name for path in args.real)}"
        plots.plot_rpsd_curves(out.path("plots/rpsd.png"), tiles, title=f"RPSD of micrograph sets vs real, {data}")
        spectra = {name: score.noise_power for name, score in scores.items()} | {"real": metrics.real.noise_power}
        frequency = (np.arange(len(spectra["real"])) + 0.5) / len(spectra["real"])
        plots.plot_curves(out.path("plots/noise_power.png"), frequency, spectra, "spatial frequency / Nyquist",
                          "noise power |F|²", log_y=True, title=f"Noise power of micrograph sets vs real, {data}")
        plots.plot_micrographs(out.path("plots/micrographs.png"), images,
                               title=f"The first micrograph of each set and the held-out real part ({pixel} Å/px)")
    log.info("metrics in %s", args.out / EvaluationFolder.METRICS)


def _labelled_micrographs(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Micrographs, their particle centres (x, y) in pixels and the pixel size."""
    from cryorefine.io.star import read_coordinate_star
    from cryorefine.metrics.micrographs import read_micrograph_set

    micrograph_set = read_micrograph_set(folder)
    if micrograph_set.coordinate_files is None:
        raise InputError(folder, "picking needs coords_NNN.star beside every micrograph")
    coordinates = [read_coordinate_star(path)[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(float)
                   for path in micrograph_set.coordinate_files]
    return micrograph_set.images, coordinates, micrograph_set.pixel_size


def evaluate_picking(args: argparse.Namespace) -> None:
    from cryorefine.io.atomic import StagedOutputDir, write_json
    from cryorefine.metrics.picking import picking_experiment

    test_images, test_xy, pixel_size = _labelled_micrographs(args.test)
    train_sets = {}
    for name, folder in _named_folders(args.train, "--train").items():
        images, xy, train_pixel = _labelled_micrographs(folder)
        if abs(train_pixel - pixel_size) > 1e-3 * pixel_size:
            raise InputError(folder, f"pixel size {train_pixel:.4g} Å differs from {pixel_size:.4g} Å of the test set")
        train_sets[name] = (images, xy)
    diameter_px = args.particle_diameter / pixel_size
    smallest = min(min(image.shape) for image in test_images)
    if diameter_px > smallest / 2:
        raise InputError(args.test, f"a {args.particle_diameter:g} Å particle is {diameter_px:.0f} px, more "
                         f"than half of the smallest micrograph ({smallest} px)")
    config = PickerConfig.for_particle(diameter_px, steps=args.steps, pretrained=args.pretrained, seed=args.seed)
    results = picking_experiment(train_sets, (test_images, test_xy), particle_radius=diameter_px / 2, config=config,
                                 repeats=args.repeats)
    report = PickingReport(results=results, test=str(args.test), particle_diameter_a=args.particle_diameter,
                           picker=PickerSettings(downsample=config.downsample, label_radius_px=config.label_radius,
                                                 steps=config.steps, pretrained=config.pretrained, seed=config.seed,
                                                 repeats=args.repeats))
    for name, scores in report.results.items():
        log.info("%s: average precision %.3f ± %.3f (%d seeds; %d of %d particles found)", name,
                 scores.average_precision, scores.average_precision_std, report.picker.repeats,
                 scores.n_matched, scores.n_true)
    with StagedOutputDir(args.out) as out:
        write_json(out.path(EvaluationFolder.PICKING), report.to_dict())
    log.info("picking results in %s", args.out / EvaluationFolder.PICKING)
