"""Training: objectives, time samplers, the trainer with EMA, checkpoints and resume."""

from monge.train import distributed
from monge.train.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from monge.train.local_reg import LocallyRegularizedLoss, LocalRegStep, local_error
from monge.train.losses import WEIGHTINGS, FlowMatchingLoss, LossOutput
from monge.train.objectives import LOSSES, make_loss
from monge.train.smooth_reg import SmoothnessRegularizedLoss
from monge.train.time_samplers import (
    LogitNormalTime,
    TimeSampler,
    UniformTime,
    make_time_sampler,
)
from monge.train.trainer import CHECKPOINT_NAME, LOG_NAME, Trainer, TrainerConfig, TrainResult

__all__ = ["CHECKPOINT_NAME", "LOG_NAME", "LOSSES", "WEIGHTINGS", "FlowMatchingLoss",
           "LocalRegStep", "LocallyRegularizedLoss", "LogitNormalTime", "LossOutput",
           "SmoothnessRegularizedLoss", "TimeSampler", "TrainResult", "Trainer",
           "TrainerConfig", "UniformTime",
           "atomic_write_bytes", "distributed", "load_checkpoint", "local_error", "make_loss",
           "make_time_sampler", "save_checkpoint"]
