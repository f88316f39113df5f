"""The one training loop, shared by the GAN and both unpaired translators.

A `TrainingTask` says what is trained: its networks and optimisers, its batches, one update, what
its log rows hold and how its saved model is described. `TrainingLoop` does the rest the same way
for every task: the step count, mixed precision, DDP's process group, the CSV log, divergence
checks, atomic checkpoints and exact resume.

One saved-model format: a `torch.save` dict with a `config` (whose `format` names the kind of
model) beside the state, {"step", each network by name, "opt_" + each optimiser, "scaler",
"rng_torch", "pending_log", and the task's own RNG streams}, plus a JSON copy of the config.
A resumed run restores all of it, so it continues exactly as if it had never stopped (bit for bit
on the CPU with the same thread count).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import warnings
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from cryorefine.artifacts import ModelFolder, TranslatorFolder
from cryorefine.errors import CryorefineError, InputError, OutputError
from cryorefine.gan.config import MODEL_FORMAT, RESUMABLE_FIELDS
from cryorefine.io.atomic import atomic_path, atomic_write_text, write_json
from cryorefine.progress import Progress
from cryorefine.unpaired.config import FORMATS

log = logging.getLogger(__name__)

# The kinds of saved model, by the `format` their config records.
MODEL_KINDS = {MODEL_FORMAT: "GAN model", **{form: f"{method} translator" for method, form in FORMATS.items()}}


class TrainingDiverged(CryorefineError):
    """A loss became NaN or infinite: training stops before the broken weights are saved."""


class ResumeRefused(Exception):
    """A saved run that this run cannot continue exactly; `TrainingLoop` reports it naming the checkpoint."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls) -> "Distributed":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class ModelFiles:
    """Where a task's model lives in its folder and how refusals name it."""

    checkpoint: str  # the saved-model file
    config: str  # its JSON copy, written after it
    log: str  # the CSV log
    noun: str  # what a foreign file is said not to be ("not a <noun>")
    unreadable: str  # how a truncated or corrupt file is reported
    made_by: str  # the command whose output folder holds it


GAN_FILES = ModelFiles(checkpoint=ModelFolder.CHECKPOINT, config=ModelFolder.CONFIG, log=ModelFolder.LOG,
                       noun="cryorefine GAN checkpoint", unreadable="unreadable checkpoint",
                       made_by="`cryorefine train`")
TRANSLATOR_FILES = ModelFiles(checkpoint=TranslatorFolder.MODEL, config=TranslatorFolder.CONFIG,
                              log=TranslatorFolder.LOG, noun="translator model",
                              unreadable="not a translator model: unreadable",
                              made_by="`cryorefine translate train`")


class MixedPrecision:
    """Autocast and a GradScaler on CUDA when asked (bf16 where supported, else fp16); plain float32 elsewhere."""

    def __init__(self, device: torch.device, enabled: bool):
        self.dtype: torch.dtype | None = None
        if enabled and device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    @property
    def name(self) -> str:
        """What the saved state records: a resumed run must compute in the same precision."""
        return "float32" if self.dtype is None else str(self.dtype).removeprefix("torch.")

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def update(self, loss: torch.Tensor, optimiser: torch.optim.Optimizer) -> None:
        """One optimiser step on `loss` (fresh gradients, scaled against fp16 underflow)."""
        optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimiser)

    def end_step(self) -> None:
        """Adapt the loss scale once per training step, after every optimiser stepped."""
        self.scaler.update()


class TrainingTask:
    """What one kind of model trains; `TrainingLoop` runs it.

    Subclasses set `networks` and `optimisers` (saved and restored by name), `model_format` (one of
    MODEL_KINDS), `files`, `log_columns` and `progress_label`, and implement `batches`, `update` and
    `description`.
    """

    model_format: str
    networks: dict[str, torch.nn.Module]
    optimisers: dict[str, torch.optim.Optimizer]
    files: ModelFiles
    log_columns: tuple[str, ...]
    progress_label: str

    def batches(self) -> Iterator:
        """The inputs of the remaining steps, drawn lazily (a step's random draws happen when it starts)."""
        raise NotImplementedError

    def update(self, batch, step: int, precision: MixedPrecision) -> dict[str, float]:
        """One training step (0-based `step`) on `batch`; returns its losses."""
        raise NotImplementedError

    def description(self) -> dict:
        """The saved model's config (`format`: `model_format`): everything needed to rebuild and use it."""
        raise NotImplementedError

    def check_resumable(self, config: dict, path: Path) -> None:
        """Refuse to resume a checkpoint whose config would make a different run."""

    def extra_state(self) -> dict:
        """The task's own RNG streams and other state a resumed run needs."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def summarise(self, steps: list[dict[str, float]]) -> dict[str, float]:
        """The log row's losses from those of the steps since the last row: their means."""
        return {key: sum(s[key] for s in steps) / len(steps) for key in steps[0]}

    def log_extras(self) -> dict[str, float]:
        """Values measured when a row is logged (validation scores, time)."""
        return {}

    def postfix(self, row: dict) -> dict[str, str]:
        """What the progress bar shows of a log row."""
        return {}

    def on_checkpoint(self) -> None:
        """Work done after each checkpoint (plots)."""


def distribute(module: torch.nn.Module, device: torch.device, distributed: Distributed) -> torch.nn.Module:
    """`module` wrapped for DDP in a multi-process job, else itself."""
    if distributed.world_size == 1:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


class TrainingLoop:
    """Runs a task from its current step to `steps`: log rows, checkpoints and resume in `out_dir`.

    Without `out_dir` nothing is written: the log rows are only returned (a model trained in memory).
    """

    def __init__(self, task: TrainingTask, out_dir: str | os.PathLike | None, steps: int, log_every: int,
                 checkpoint_every: int, device: torch.device = torch.device("cpu"), amp: bool = False,
                 distributed: Distributed = Distributed(), resume: bool = False):
        self.task = task
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.steps, self.log_every, self.checkpoint_every = steps, log_every, checkpoint_every
        self.device = device
        self.dist = distributed
        self.precision = MixedPrecision(device, amp)
        self.step = 0
        self._saved_step = 0  # the step of the checkpoint on disk (0: none yet)
        self._pending: list[dict[str, float]] = []  # losses of the steps not yet in a log row
        if self.out_dir is not None:
            if resume:
                self._resume()
            elif (self.out_dir / task.files.checkpoint).exists():
                raise InputError(self.out_dir, f"already holds a model ({task.files.checkpoint}); "
                                 "pass --resume to continue it or choose another --out")

    def state(self) -> dict:
        return {
            "step": self.step,
            **{name: network.state_dict() for name, network in self.task.networks.items()},
            **{f"opt_{name}": optimiser.state_dict() for name, optimiser in self.task.optimisers.items()},
            "scaler": self.precision.scaler.state_dict(),
            "precision": self.precision.name,
            "rng_torch": torch.get_rng_state(),
            "pending_log": list(self._pending),
            **self.task.extra_state(),
        }

    def _resume(self) -> None:
        files = self.task.files
        config, state = read_checkpoint(self.out_dir, files, (self.task.model_format,), self.device)
        path = self.out_dir / files.checkpoint
        self.task.check_resumable(config, path)
        saved = state.get("precision", self.precision.name)  # recorded since the translators run on a GPU
        if saved != self.precision.name:
            raise InputError(path, f"trained in {saved}, but this run would compute in {self.precision.name}: resume "
                             "it as it was trained (the same --no-amp, on the same kind of device)")
        try:
            for name, network in self.task.networks.items():
                network.load_state_dict(state[name])
            for name, optimiser in self.task.optimisers.items():
                optimiser.load_state_dict(state[f"opt_{name}"])
            self.precision.scaler.load_state_dict(state["scaler"])
            self.task.load_extra_state(state)
        except ResumeRefused as exc:
            raise InputError(path, str(exc)) from None
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(path, "cannot resume: the checkpoint does not match this "
                             f"cryorefine's model ({detail[:160]})") from None
        torch.set_rng_state(state["rng_torch"].cpu())
        self._pending = list(state.get("pending_log", []))  # saved since it existed; before, the rows restart
        self.step = self._saved_step = int(state["step"])
        log.info("resuming %s at step %d", self.out_dir, self.step)

    def take_step(self, batch) -> dict[str, float]:
        """One update of the task on `batch`; the step count moves on."""
        losses = self.task.update(batch, self.step, self.precision)
        self.step += 1
        return losses

    def save(self) -> None:
        write_checkpoint(self.out_dir, self.task.files, self.task.description(), self.state())
        self._saved_step = self.step

    def _start_log(self) -> Path:
        """The log with a header; on resume, rows after the checkpoint's step are dropped."""
        path = self.out_dir / self.task.files.log
        rows: list[dict] = []
        if self.step > 0 and path.exists():
            with open(path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= self.step]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.task.log_columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, text.getvalue())
        return path

    def run(self) -> list[dict]:
        """Train up to `steps`; returns the log rows of this run (none if nothing was left to do)."""
        if self.step >= self.steps:
            if self.dist.is_main and self.out_dir is not None:
                log.info("%s was trained to step %d already (--steps %d): nothing left to train; raise --steps to "
                         "train on", self.out_dir, self.step, self.steps)
            return []
        writes = self.out_dir is not None and self.dist.is_main
        log_path = self._start_log() if writes else None
        rows: list[dict] = []
        progress = Progress(self.steps, self.task.progress_label, initial=self.step, disable=not self.dist.is_main)
        batches = self.task.batches()
        while self.step < self.steps:
            losses = self.take_step(next(batches))
            diverged = [key for key, value in losses.items() if not math.isfinite(value)]
            if diverged:
                progress.close()
                kept = f"the checkpoint of step {self._saved_step} is kept" if self._saved_step else "no checkpoint was written"
                raise TrainingDiverged(f"training diverged at step {self.step}: {diverged[0]} is not finite; {kept} "
                                       "(lower the learning rates or the loss weights)")
            self._pending.append(losses)
            progress.update(1)
            last = self.step == self.steps
            if self.dist.is_main and (self.step % self.log_every == 0 or last):
                row = {"step": self.step, **self.task.summarise(self._pending), **self.task.log_extras()}
                rows.append(row)
                if log_path is not None:
                    with open(log_path, "a", newline="") as handle:
                        csv.DictWriter(handle, fieldnames=self.task.log_columns).writerow(row)
                log.debug("step %d: %s", self.step, ", ".join(f"{k} {v:.3g}" for k, v in row.items() if k != "step"))
                progress.set_postfix(**self.task.postfix(row))
                self._pending = []
            if writes and (self.step % self.checkpoint_every == 0 or last):
                self.save()
                self.task.on_checkpoint()
        progress.close()
        if self.dist.world_size > 1:
            dist.barrier()
        return rows


def write_checkpoint(folder: str | os.PathLike, files: ModelFiles, config: dict, state: dict) -> None:
    """The checkpoint (config + `state`), then its config's JSON copy, each written atomically.

    Refuses weights with NaN or infinite values, so the earlier checkpoint survives a diverged run.
    Serialised in memory first: torch's own file writer reports a full disk as a bare RuntimeError,
    Python's as an OSError that atomic_path turns into a clear message.
    """
    folder = Path(folder)
    for part, tensors in state.items():
        if isinstance(tensors, dict) and any(torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all()
                                             for t in tensors.values()):
            raise OutputError(folder / files.checkpoint, f"the {part} has NaN or infinite values; not saved, the "
                              "earlier checkpoint is left as it was")
    buffer = io.BytesIO()
    torch.save({"config": config, **state}, buffer)
    with atomic_path(folder / files.checkpoint) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    write_json(folder / files.config, config)


def load_checkpoint_file(path: Path, files: ModelFiles, map_location: str | torch.device = "cpu") -> dict:
    """The dict stored in `path`, its `config` still inside; refuses files that are not one.

    `torch.load(weights_only=True)`: no pickled code runs, and a file that asks to is named so.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about odd pickle protocols before refusing them
            stored = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several kinds for truncated or foreign files
        # torch's message is a paragraph; keep the line that says what was found.
        lines = [line for line in str(exc).splitlines() if line.strip()]
        code = next((line for line in lines if "GLOBAL" in line), None)
        if code is not None:
            raise InputError(path, f"refused: the file asks to run Python code ({code}); "
                             "a foreign or tampered checkpoint, nothing in it was run") from None
        detail = next((line for line in lines if "Unsupported" in line), lines[0].split(". ")[0] if lines else "")
        raise InputError(path, f"{files.unreadable}, truncated or corrupt ({type(exc).__name__}: {detail.strip()})") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
        raise InputError(path, f"not a {files.noun}")
    return stored


def check_checkpoint(stored: dict, path: Path, files: ModelFiles, formats: Collection[str]) -> tuple[dict, dict]:
    """(config, state) of a stored checkpoint of one of `formats`, whose JSON copy beside it agrees."""
    state = dict(stored)
    config = state.pop("config")
    kind = config.get("format")
    if kind not in formats:
        held = f" (it holds a {MODEL_KINDS[kind]})" if kind in MODEL_KINDS else ""
        raise InputError(path, f"not a {files.noun}{held}")
    config_path = path.parent / files.config
    if config_path.is_file():
        try:
            beside = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(config_path, f"malformed JSON ({exc})") from None
        if _model_defining(beside) != _model_defining(json.loads(json.dumps(config))):
            raise InputError(config_path, f"does not match the config stored in {files.checkpoint}")
    return config, state


def read_checkpoint(folder: str | os.PathLike, files: ModelFiles, formats: Collection[str],
                    map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(config, state) of the model saved in `folder`; refuses a missing, foreign, damaged or other kind of file."""
    folder = Path(folder)
    path = folder / files.checkpoint
    if not path.is_file():
        raise InputError(folder, f"no {files.checkpoint} (expected the output folder of {files.made_by})")
    return check_checkpoint(load_checkpoint_file(path, files, map_location), path, files, formats)


def _model_defining(config: object) -> object:
    """A config without the loop settings a resumed run may change: a run killed between writing the
    checkpoint and its JSON copy leaves them differing only there, and the model is still good."""
    if not isinstance(config, dict):
        return config
    return {key: ({k: v for k, v in value.items() if k not in RESUMABLE_FIELDS} if isinstance(value, dict) else value)
            for key, value in config.items()}
