"""What the two translators' training tasks share on the training loop (cryorefine.training)."""

from __future__ import annotations

from pathlib import Path

from cryorefine.training import TRANSLATOR_FILES, ResumeRefused, TrainingTask
from cryorefine.unpaired.config import check_resumable


class TranslatorTask(TrainingTask):
    """A translator's task: saved as its translator's description (what a resumed run must match), with the
    two random streams every translator draws from, `tiles` (numpy) and `noise` (torch), saved with each
    checkpoint so that a resumed run continues them. `noise` lives on the training device, whose kind is
    saved beside it: a CPU stream and a CUDA stream cannot continue each other."""

    files = TRANSLATOR_FILES

    def translator(self):
        raise NotImplementedError

    def description(self) -> dict:
        return self.translator().description()

    def check_resumable(self, config: dict, path: Path) -> None:
        check_resumable(config, self.description(), path)

    def extra_state(self) -> dict:
        return {"rng_tiles": self.tiles.bit_generator.state, "rng_noise": self.noise.get_state(),
                "rng_noise_device": self.noise.device.type}

    def load_extra_state(self, state: dict) -> None:
        saved = state.get("rng_noise_device", "cpu")  # runs saved before devices were recorded trained on the CPU
        if saved != self.noise.device.type:
            raise ResumeRefused(f"trained with --device {saved}: resume it on a {saved} device (its random streams "
                                "cannot continue on another kind)")
        self.tiles.bit_generator.state = state["rng_tiles"]
        self.noise.set_state(state["rng_noise"].cpu())
