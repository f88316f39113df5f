"""Reliability on messy projects: bad input, killed runs, full disks, tampered checkpoints, determinism.

Every bad input must give one line naming the file and the problem, exit status 2, no traceback,
and leave the output folder exactly as it was. docs/reliability.md lists what each case shows.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from _pairs import make_pairs
from cryorefine.synthetic import blob_map
from _synthetic import varied_particles, write_dataset
from cryorefine import cli
from cryorefine.errors import InputError
from cryorefine.gan.checkpoint import load_checkpoint, load_generator
from cryorefine.io.mrc import read_stack
from cryorefine.io.star import particle_parameters, read_particle_star
from cryorefine.physics.forward import ForwardModel

TINY = ["--base-channels", "4", "--depth", "2", "--batch-size", "4"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the test process (torch.set_num_threads(1) in `base`)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """in/ (6 particles of a blob map, 32 px), pairs/ (12 pairs), simulated/ (`simulate` of in/, the
    --like of generate) and model/ (2 steps of a tiny GAN)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("base")
    volume, tables = blob_map(32, seed=1), varied_particles(6, 32, 2.0, seed=1)
    star, _ = write_dataset(root / "in", volume, 2.0, *tables, np.zeros((6, 32, 32), np.float32))
    clean = ForwardModel(volume, 2.0).simulate(particle_parameters(read_particle_star(star))).numpy()
    noisy = 3 * clean / clean.std() + np.random.default_rng(1).normal(size=clean.shape)
    write_dataset(root / "in", volume, 2.0, *tables, noisy.astype(np.float32))
    # Image names relative to root, as in a RELION project: a copy of the whole folder reads its own stacks.
    assert cli.main(["simulate", "--particles", str(star), "--map", str(root / "in/map.mrc"), "--out",
                     str(root / "simulated"), "--device", "cpu", "--project-dir", str(root)]) == 0
    make_pairs(root / "pairs", n=12, box=32)
    assert cli.main(["train", "--pairs", str(root / "pairs"), "--out", str(root / "model"), "--steps", "2",
                     "--device", "cpu", "--log-every", "2", "--checkpoint-every", "2", *TINY]) == 0
    return root


def _command(name: str, d: Path) -> list:
    return {
        "simulate": ["simulate", "--particles", d / "in/particles.star", "--map", d / "in/map.mrc", "--out", d / "out"],
        "apply": ["apply", "--model", d / "model", "--particles", d / "pairs/sim.star", "--out", d / "out",
                  "--noise", "gaussian", "--device", "cpu"],
        "generate": ["generate", "--model", d / "model", "--map", d / "in/map.mrc", "--like", d / "simulated/raw.star",
                     "--n", "4", "--out", d / "out", "--noise", "gaussian", "--device", "cpu", "--project-dir", d],
        "evaluate": ["evaluate", "particles", "--fake", d / "pairs/sim.star", "--raw", d / "pairs/raw.star", "--out", d / "out",
                     "--classifier-steps", "2"],
        "train": ["train", "--pairs", d / "pairs", "--out", d / "out", "--steps", "1", "--device", "cpu", *TINY],
    }[name]


# The STAR file each command reads and the stack it names.
STAR_OF = {"simulate": "in/particles.star", "apply": "pairs/sim.star", "generate": "simulated/raw.star",
           "evaluate": "pairs/sim.star", "train": "pairs/raw.star"}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _stack_of(star: Path) -> Path:
    return star.with_suffix(".mrcs") if star.with_suffix(".mrcs").exists() else star.parent / "particles.mrcs"


def _rewrite_stack(path: Path, change) -> None:
    data = mrcfile.read(path).copy()
    with mrcfile.new(path, overwrite=True) as handle:
        handle.set_data(np.ascontiguousarray(change(data), dtype=np.float32))
        handle.voxel_size = 2.0


def _set_pixel(data: np.ndarray, value: float) -> np.ndarray:
    data[1, 3, 3] = value
    return data


def _second_row_name(star: Path) -> str:
    line = next(line for line in star.read_text().splitlines() if line.startswith("000002@"))
    return line.split()[0]


def _truncate_star(star: Path) -> None:
    text = star.read_text()
    star.write_text(text[: text.index(_second_row_name(star)) + 60])


STAR_CASES = {
    # case: (corrupt(star path), words the one-line message must contain)
    "missing STAR": (lambda s: s.unlink(), "file not found"),
    "STAR is a directory": (lambda s: (s.unlink(), s.mkdir()), "is a directory"),
    "truncated STAR": (_truncate_star, "fewer values than"),
    "binary garbage STAR": (lambda s: s.write_bytes(np.random.default_rng(0).bytes(3000)), "no data table"),
    "empty STAR file": (lambda s: s.write_text(""), "no data table"),
    "no _rlnImageName": (lambda s: _edit(s, "_rlnImageName", "_rlnSomething"), "missing required column _rlnImageName"),
    "word in numeric optics column": (lambda s: _edit(s, "300.000000", "three-hundred"), "_rlnVoltage has a non-numeric"),
    "repeated column": (lambda s: _edit(s, "_rlnAngleRot", "_rlnImageName"), "appears more than once"),
    "bad image name": (lambda s: _edit(s, "000002@", "two@"), "bad _rlnImageName"),
    "stack index out of range": (lambda s: _edit(s, "000002@", "000099@"), "image 99 requested"),
    "no particles": (lambda s: s.write_text(s.read_text().split("data_particles")[0]
                                            + "data_particles\n\nloop_\n_rlnImageName #1\n"), "contains no particles"),
    "missing stack": (lambda s: _stack_of(s).unlink(), "not found"),
    "NaN in an image": (lambda s: _rewrite_stack(_stack_of(s), lambda a: _set_pixel(a, np.nan)), "NaN or Inf"),
    "Inf in an image": (lambda s: _rewrite_stack(_stack_of(s), lambda a: _set_pixel(a, np.inf)), "NaN or Inf"),
    "non-square images": (lambda s: _rewrite_stack(_stack_of(s), lambda a: a[:, :, :30]), "must be square"),
    "truncated stack": (lambda s: _stack_of(s).write_bytes(_stack_of(s).read_bytes()[:2000]), "truncated or corrupt"),
    "stacks of different boxes": (lambda s: (shutil.copy(_stack_of(s), s.parent / "other.mrcs"),
                                             _rewrite_stack(s.parent / "other.mrcs", lambda a: a[:, :28, :28]),
                                             _edit(s, _second_row_name(s), "000002@other.mrcs")), "differs from 32"),
    "zero pixel size": (lambda s: _edit(s, " 2.000000 32", " 0.000000 32"), "pixel size must be positive"),
}


def _ctf_text_defocus(star: Path) -> None:
    lines = star.read_text().splitlines()
    columns = [line.split()[0] for line in lines if line.startswith("_rln")]
    particle_columns = columns[len(columns) - columns[::-1].index("_rlnImageName") - 1:]
    at = particle_columns.index("_rlnDefocusU")
    row = next(i for i, line in enumerate(lines) if line.startswith("000002@"))
    words = lines[row].split()
    words[at] = "abc"
    lines[row] = " ".join(words)
    star.write_text("\n".join(lines) + "\n")


CTF_CASES = {  # only simulate and generate use the CTF
    "no _rlnDefocusU": (lambda s: _edit(s, "_rlnDefocusU", "_rlnSomething"), "missing required column _rlnDefocusU"),
    "word in _rlnDefocusU": (_ctf_text_defocus, "_rlnDefocusU has a non-numeric"),
}


def _write_map(path: Path, data: np.ndarray, voxel: float = 2.0) -> None:
    with mrcfile.new(path, overwrite=True) as handle:
        handle.set_data(np.asarray(data, dtype=np.float32))
        handle.voxel_size = voxel


MAP_CASES = {
    "missing map": (lambda m: m.unlink(), "file not found"),
    "map is a directory": (lambda m: (m.unlink(), m.mkdir()), "is a directory"),
    "NaN in map": (lambda m: _write_map(m, _set_pixel(mrcfile.read(m).copy(), np.nan)), "NaN or Inf"),
    "Inf in map": (lambda m: _write_map(m, _set_pixel(mrcfile.read(m).copy(), np.inf)), "NaN or Inf"),
    "zero-size map": (lambda m: _write_map(m, np.zeros((0, 32, 32))), "zero size"),
    "non-cubic map": (lambda m: _write_map(m, mrcfile.read(m)[:, :, :30]), "must be cubic"),
    "2D image as map": (lambda m: _write_map(m, mrcfile.read(m)[0]), "expected a 3D map"),
    "map/particle pixel size mismatch": (lambda m: _write_map(m, mrcfile.read(m), 20.0), "pixel size mismatch"),
    "map without voxel size": (lambda m: _write_map(m, mrcfile.read(m), 0.0), "no voxel size"),
    "truncated map": (lambda m: m.write_bytes(m.read_bytes()[:3000]), "truncated or corrupt"),
}


def _embedded_config_edit(model: Path) -> None:
    state = torch.load(model / "checkpoint.pt", weights_only=True)
    state["config"]["model"]["base_channels"] = 8
    torch.save(state, model / "checkpoint.pt")
    (model / "config.json").unlink()


MODEL_CASES = {
    "missing model folder": (lambda m: shutil.rmtree(m), "no checkpoint.pt"),
    "model is a file": (lambda m: (shutil.rmtree(m), m.write_text("x")), "no checkpoint.pt"),
    "truncated checkpoint": (lambda m: (m / "checkpoint.pt").write_bytes((m / "checkpoint.pt").read_bytes()[:5000]),
                             "truncated or corrupt"),
    "empty checkpoint": (lambda m: (m / "checkpoint.pt").write_bytes(b""), "truncated or corrupt"),
    "foreign state dict": (lambda m: torch.save({"weight": torch.zeros(3)}, m / "checkpoint.pt"),
                           "not a cryorefine GAN checkpoint"),
    "config.json from another model": (lambda m: _edit(m / "config.json", '"base_channels": 4', '"base_channels": 8'),
                                       "does not match"),
    "weights do not fit their config": (_embedded_config_edit, "do not match its config"),
    "malformed config.json": (lambda m: (m / "config.json").write_text("{"), "malformed JSON"),
    "no noise_models.json": (lambda m: (m / "noise_models.json").unlink(), "no noise_models.json"),
}

PAIRS_CASES = {
    "pairs folder missing": (lambda p: shutil.rmtree(p), {"train": "pairs folder not found", "evaluate": "not found"}),
    "sim/raw counts differ": (lambda p: (p / "raw.star").write_text("\n".join((p / "raw.star").read_text().splitlines()[:-3]) + "\n"),
                              {"train": "has 10", "evaluate": "has 10"}),
    "sim/raw boxes differ": (lambda p: _rewrite_stack(p / "raw.mrcs", lambda a: a[:, :28, :28]),
                             {"train": "differs from raw box 28", "evaluate": "differs from 28"}),
}

MATRIX = (
    [(f"{case} / {cmd}", cmd, "star", case, STAR_CASES[case][1]) for case in STAR_CASES
     for cmd in ("simulate", "apply", "generate", "evaluate", "train")]
    + [(f"{case} / {cmd}", cmd, "ctf", case, CTF_CASES[case][1]) for case in CTF_CASES for cmd in ("simulate", "generate")]
    + [(f"{case} / {cmd}", cmd, "map", case, MAP_CASES[case][1]) for case in MAP_CASES for cmd in ("simulate", "generate")]
    + [(f"{case} / {cmd}", cmd, "model", case, MODEL_CASES[case][1]) for case in MODEL_CASES for cmd in ("apply", "generate")]
    + [(f"{case} / {cmd}", cmd, "pairs", case, PAIRS_CASES[case][1][cmd]) for case in PAIRS_CASES
       for cmd in ("train", "evaluate")]
)


def _corrupt(d: Path, cmd: str, kind: str, case: str) -> None:
    if kind in ("star", "ctf"):
        (STAR_CASES if kind == "star" else CTF_CASES)[case][0](d / STAR_OF[cmd])
    elif kind == "map":
        MAP_CASES[case][0](d / "in/map.mrc")
    elif kind == "model":
        MODEL_CASES[case][0](d / "model")
    else:
        PAIRS_CASES[case][0](d / "pairs")


def _with_earlier_output(d: Path) -> Path:
    out = d / "out"
    out.mkdir()
    (out / "particles.star").write_text("earlier result\n")
    return out


def _assert_refused(rc: int, stderr: str, expected: str, out: Path) -> None:
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert rc == 2, stderr
    assert "Traceback" not in stderr and len(errors) == 1, stderr
    assert expected in errors[0], errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["particles.star"], "partial output left behind"
    assert (out / "particles.star").read_text() == "earlier result\n"


@pytest.mark.parametrize("cmd,kind,case,expected", [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX])
def test_bad_input_is_one_line_exit_2_and_output_untouched(base, tmp_path, capsys, cmd, kind, case, expected):
    d = tmp_path / "d"
    shutil.copytree(base, d)
    _corrupt(d, cmd, kind, case)
    out = _with_earlier_output(d)
    capsys.readouterr()
    rc = cli.main([str(a) for a in _command(cmd, d)])  # an unexpected exception fails the test with its traceback
    _assert_refused(rc, capsys.readouterr().err, expected, out)


@pytest.mark.parametrize("cmd", ["generate", "train"])
@pytest.mark.parametrize("voxel_option", [[], ["--map-pixel-size", "2.5"]])
def test_a_map_its_images_do_not_match_names_the_voxel_size_to_check(base, tmp_path, capsys, cmd, voxel_option):
    """A negated map (contrast the wrong way round) fits a sim scale <= 0 to every image: the one line names the
    map and the voxel size it was read at, where it came from, and the particles' pixel size."""
    d = tmp_path / "d"
    shutil.copytree(base, d)
    _write_map(d / "in/map.mrc", -mrcfile.read(d / "in/map.mrc"))
    out = _with_earlier_output(d)
    argv = (_command("generate", d) if cmd == "generate" else
            ["train", "--particles", d / "simulated/raw.star", "--map", d / "in/map.mrc", "--out", d / "out", "--steps",
             "1", "--device", "cpu", "--project-dir", d, "--pixel-size", "4", *TINY])  # the particles are 2 Å
    capsys.readouterr()
    rc = cli.main([str(a) for a in [*argv, *voxel_option]])
    stderr = capsys.readouterr().err
    _assert_refused(rc, stderr, f"{d / 'in/map.mrc'} do not correlate", out)
    source = "2.5 Å per voxel (--map-pixel-size)" if voxel_option else "2 Å per voxel (its header)"
    assert f"its {source} is right against the particles' 2 Å" in stderr, stderr


def test_on_the_fly_options_with_ready_pairs_are_refused_not_ignored(base, tmp_path, capsys):
    out = _with_earlier_output(tmp_path)
    capsys.readouterr()
    rc = cli.main([str(a) for a in [*_command("train", tmp_path), "--pairs", base / "pairs", "--box", "24", "--no-ctf"]])
    _assert_refused(rc, capsys.readouterr().err, "--box, --no-ctf: on-the-fly simulation options, for --particles", out)
    assert cli.main([str(a) for a in [*_command("train", tmp_path), "--pairs", base / "pairs", "--project-dir",
                                      tmp_path, "--out", tmp_path / "new"]]) == 0  # shared with --pairs


def _run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cryorefine.cli", *map(str, argv)], capture_output=True, text=True,
                          **kwargs)


def test_real_command_line_prints_one_line_and_exit_2(base, tmp_path):
    """The same contract through `python -m cryorefine.cli`, as a user or a pipeline sees it."""
    d = tmp_path / "d"
    shutil.copytree(base, d)
    _truncate_star(d / "pairs/sim.star")
    out = _with_earlier_output(d)
    result = _run(_command("apply", d))
    _assert_refused(result.returncode, result.stderr, "sim.star: particles row 2 has fewer values", out)


class _Payload:
    """Pickles to a call of os.mkdir(path): proof of code execution if the directory appears."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.mark.parametrize("packaging", ["torch.save", "raw pickle"])
def test_tampered_checkpoint_cannot_run_code(base, tmp_path, packaging):
    model, proof = tmp_path / "model", tmp_path / "code-was-run"
    shutil.copytree(base / "model", model)
    payload = {"config": load_checkpoint(base / "model")[0].to_dict(), "generator": _Payload(proof)}
    pickle.loads(pickle.dumps(_Payload(proof)))  # the payload is real: plain unpickling runs it
    assert proof.is_dir()
    proof.rmdir()
    if packaging == "torch.save":
        torch.save(payload, model / "checkpoint.pt")
    else:
        (model / "checkpoint.pt").write_bytes(pickle.dumps(payload))
    with pytest.raises(InputError, match="refused: the file asks to run Python code|truncated or corrupt"):
        load_generator(model)
    out = _with_earlier_output(tmp_path)
    result = _run(["apply", "--model", model, "--particles", base / "pairs/sim.star", "--out", out, "--device", "cpu"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not proof.exists()


def _wait_for(condition, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_training_killed_at_random_moments_resumes_to_the_same_model(base, tmp_path):
    """SIGKILL twice at random moments: the last checkpoint always loads, and --resume ends where an
    uninterrupted run ends (same weights, optimiser state and data order). Bit-exact on CPU needs the
    same thread count in every process: float sums are split by thread."""
    train = ["train", "--pairs", base / "pairs", "--steps", "6", "--device", "cpu", "--log-every", "1",
             "--checkpoint-every", "1", *TINY]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert cli.main([str(a) for a in [*train, "--out", straight]]) == 0
    rng = random.Random(os.getpid())
    for attempt in range(2):
        resume = ["--resume"] if (killed / "checkpoint.pt").exists() else []
        process = subprocess.Popen([sys.executable, "-m", "cryorefine.cli", *map(str, train), "--out", killed, *resume],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ONE_THREAD)
        _wait_for(lambda: (killed / "log.csv").exists() or process.poll() is not None, 60)
        time.sleep(rng.uniform(0.0, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        if (killed / "checkpoint.pt").exists():
            settings, state = load_checkpoint(killed)  # never half-written
            assert 0 < state["step"] <= 6 and settings.box == 32
    resume = ["--resume"] if (killed / "checkpoint.pt").exists() else []
    assert cli.main([str(a) for a in [*train, "--out", killed, *resume]]) == 0
    (_, a), (_, b) = load_checkpoint(straight), load_checkpoint(killed)
    assert a["step"] == b["step"] == 6
    for part in ("generator", "discriminator"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert [len(group["params"]) for group in a["opt_generator"]["param_groups"]] == \
        [len(group["params"]) for group in b["opt_generator"]["param_groups"]]
    for index, values in a["opt_generator"]["state"].items():
        assert torch.equal(values["exp_avg"], b["opt_generator"]["state"][index]["exp_avg"])
    steps = [line.split(",")[0] for line in (killed / "log.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, 7)], steps


@pytest.mark.parametrize("command", ["apply", "generate"])
def test_output_killed_half_way_keeps_the_earlier_output_and_a_rerun_completes(base, tmp_path, command):
    # Long enough (a few seconds even on an idle machine) that the kill lands while images are
    # computed, not in the moment between publishing the outputs and the process's exit.
    n = 3000
    pairs = make_pairs(tmp_path / "pairs", n=n, box=32, seed=4)
    out = tmp_path / "out"
    argv = {"apply": ["apply", "--model", base / "model", "--particles", pairs / "sim.star", "--noise", "gan"],
            "generate": ["generate", "--model", base / "model", "--map", base / "in/map.mrc", "--like", base / "simulated/raw.star",
                         "--n", str(n), "--noise", "gan"]}[command]
    argv += ["--device", "cpu", "--batch-size", "16", "--out"]
    assert cli.main([str(a) for a in [*argv, out, "--seed", "1"]]) == 0
    earlier = _digests(out)
    process = subprocess.Popen([sys.executable, "-m", "cryorefine.cli", *map(str, argv), out, "--seed", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: any(out.glob(".cryorefine-partial-*/particles.mrcs")) or process.poll() is not None, 60)
    time.sleep(random.uniform(0.05, 0.3))
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed; make it longer"
    assert _digests(out) == earlier
    rerun = _run([*argv, out, "--seed", "2"])
    assert rerun.returncode == 0 and "interrupted" in rerun.stderr  # the leftover staging folder is pointed out
    reference = tmp_path / "reference"
    assert cli.main([str(a) for a in [*argv, reference, "--seed", "2"]]) == 0
    for name in earlier:  # stacks compared by data: the MRC header holds a creation time
        if name.endswith(".mrcs"):
            assert np.array_equal(read_stack(out / name), read_stack(reference / name)), name
        else:
            assert _published_bytes(out / name, out) == _published_bytes(reference / name, reference), name


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_file_size_limit_gives_one_line_and_keeps_earlier_outputs(base, tmp_path):
    """RLIMIT_FSIZE (works unprivileged) makes writes fail with EFBIG, as a quota or full disk would."""
    out = tmp_path / "out"
    apply = ["apply", "--model", base / "model", "--noise", "gaussian", "--device", "cpu", "--out", out]
    assert _run([*apply, "--particles", base / "pairs/sim.star"]).returncode == 0
    earlier = _digests(out)
    big = make_pairs(tmp_path / "big", n=200, box=32)
    result = _run([*apply, "--particles", big / "sim.star"], preexec_fn=_limit_file_size(300_000))
    _assert_one_line_write_error(result, "file too large")
    assert _digests(out) == earlier

    model = tmp_path / "model"
    shutil.copytree(base / "model", model)
    before = (model / "checkpoint.pt").read_bytes()
    result = _run(["train", "--pairs", base / "pairs", "--out", model, "--resume", "--steps", "3", "--device", "cpu",
                   "--log-every", "1", "--checkpoint-every", "1", *TINY], preexec_fn=_limit_file_size(1_000_000))
    _assert_one_line_write_error(result, "checkpoint.pt: could not write (file too large")
    assert (model / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(model)[1]["step"] == 2


def _assert_one_line_write_error(result: subprocess.CompletedProcess, expected: str) -> None:
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1 and expected in errors[0], result.stderr


@pytest.fixture
def small_tmpfs(tmp_path):
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the RLIMIT_FSIZE test covers write failures")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_full_disk_gives_one_line_and_keeps_earlier_outputs(base, tmp_path, small_tmpfs):
    """A 1 MB filesystem: memory-mapped stacks used to die of SIGBUS here; now space is reserved first."""
    out = small_tmpfs / "out"
    apply = ["apply", "--model", base / "model", "--noise", "gaussian", "--device", "cpu", "--out", out]
    assert _run([*apply, "--particles", base / "pairs/sim.star"]).returncode == 0
    earlier = _digests(out)
    (small_tmpfs / "filler").write_bytes(bytes(700_000))
    big = make_pairs(tmp_path / "big", n=200, box=32)  # an 0.8 MB stack
    result = _run([*apply, "--particles", big / "sim.star"])
    _assert_one_line_write_error(result, "no space left on device")
    assert _digests(out) == earlier


def _digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every published file in a folder (staging folders excluded).

    Digests rather than bytes: a failing comparison of megabyte values sends pytest's diff into
    minutes of work; digests fail at once and still show which file changed.
    """
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".")}


def _published_bytes(path: Path, folder: Path) -> bytes:
    """A file's bytes with its output folder's own path (which STAR image names hold) written as OUT."""
    return path.read_bytes().replace(str(folder.resolve()).encode(), b"OUT")


def _outputs(folder: Path) -> dict[str, str]:
    """Digests of STAR and JSON bytes and of stack data (an MRC header holds its creation time)."""
    return {str(p.relative_to(folder)): hashlib.sha256(read_stack(p).tobytes() if p.suffix == ".mrcs"
                                                       else _published_bytes(p, folder)).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in (".star", ".mrcs", ".json") and p.name != "summary.json"}


@pytest.mark.parametrize("cmd", ["simulate", "generate", "evaluate"])
def test_same_seed_on_cpu_gives_identical_outputs(base, tmp_path, cmd):
    """train and apply are checked in test_train_apply.py; these are the other seeded commands."""
    runs = []
    for name in ("a", "b"):
        argv = [str(a) for a in _command(cmd, base)]
        argv[argv.index("--out") + 1] = str(tmp_path / name)
        assert cli.main([*argv, "--seed", "3"]) == 0
        runs.append(_outputs(tmp_path / name))
    assert runs[0] and runs[0] == runs[1]
