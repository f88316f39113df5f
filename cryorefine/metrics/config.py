"""The metrics' settings: torch-free, so the command line and the adapters read the defaults without loading torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClassifierConfig:
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 1e-3
    test_fraction: float = 0.5
    channels: int = 16
    repeats: int = 5


@dataclass(frozen=True)
class MicrographScoreConfig:
    tile: int = 64
    classifier_steps: int = 300
    classifier_repeats: int = ClassifierConfig.repeats
    seed: int = 0


@dataclass(frozen=True)
class DenoiserConfig:
    """The fixed recipe: the same for every training set, so only the data differ."""

    # Dilated 3x3 convolutions (dilations 1, 2, 4, 8, 1): a 33 px receptive field, enough to
    # see a particle at 48-64 px, small enough to train in seconds on a CPU.
    channels: int = 16
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1)
    steps: int = 300
    batch_size: int = 16
    learning_rate: float = 1e-3
    seed: int = 0
    repeats: int = 3


# Pickers per training set, each with its own seed: one picker's AP moves by a few hundredths with
# the seed, as much as the differences between training sets.
PICKING_REPEATS = 3


@dataclass
class PickerConfig:
    downsample: float = 4.0  # Fourier-crop factor: aim for a particle diameter of 10-30 px after it
    label_radius: float = 12.0  # original px; topaz's default of 3 px after 4x downsampling
    steps: int = 300
    batch_size: int = 64  # crops of the receptive field (71 px), as the network scores one pixel each
    positive_fraction: float = 0.5  # of each minibatch; the rest are drawn from all other pixels
    learning_rate: float = 1e-3
    units: int = 32  # ResNet8 width (32, 64, 128 channels); topaz's pretrained models have 32 or 64
    # Start from topaz's resnet8_u{units} detector weights; off, so that only the training set counts.
    pretrained: bool = False
    seed: int = 0

    @classmethod
    def for_particle(cls, diameter_px: float, **settings) -> PickerConfig:
        """Topaz's recipe for a particle `diameter_px` across: about 14 px after downsampling (its 10-30 px
        range), positives within about a fifth of the diameter of a centre (at least one downsampled pixel)."""
        downsample = max(1.0, diameter_px / 14)
        return cls(downsample=downsample, label_radius=max(downsample, 0.2 * diameter_px), **settings)
