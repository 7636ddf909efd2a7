"""Training: patches, the joint multi-width RD loss, the trainer and λ-scheduling."""

from .data import MixedSampler, PatchSampler
from .loss import MultiWidthRDLoss
from .trainer import ARCHS, TrainConfig, Trainer, train

__all__ = ["ARCHS", "MixedSampler", "MultiWidthRDLoss", "PatchSampler", "TrainConfig", "Trainer",
           "train"]
