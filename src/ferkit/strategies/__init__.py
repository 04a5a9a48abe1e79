"""Imbalance strategies as independent choices: loss, class weights, sampling."""
from .losses import LOSSES, LossSpec, make_loss
from .sampling import sampling_weights
from .weights import WEIGHT_MODES, class_weights

__all__ = ["LOSSES", "LossSpec", "make_loss", "sampling_weights", "WEIGHT_MODES", "class_weights"]
