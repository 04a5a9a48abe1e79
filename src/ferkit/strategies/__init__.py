"""Imbalance strategies as independent choices: loss, class weights, sampling, and when each starts
(`for_epoch` puts them together per epoch); distillation (`distill`) and mixing (`mixing`)."""

from .losses import LOSSES, LossSpec, make_loss
from .sampling import SAMPLERS, PowerSampler, Sampler, Shuffle, sampling_weights
from .schedule import DEFERRALS, EpochStrategy, FromEpoch, for_epoch, sampler_of
from .weights import WEIGHT_MODES, class_weights

__all__ = [
    "LOSSES",
    "LossSpec",
    "make_loss",
    "SAMPLERS",
    "PowerSampler",
    "Sampler",
    "Shuffle",
    "sampling_weights",
    "DEFERRALS",
    "EpochStrategy",
    "FromEpoch",
    "for_epoch",
    "sampler_of",
    "WEIGHT_MODES",
    "class_weights",
]
