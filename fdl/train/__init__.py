"""Training core: state, optimizers, compiled steps, mesh, loop, checkpoints."""

from fdl.train.checkpoint import (CheckpointError, Checkpointer,
                                  DamagedCheckpointWarning)
from fdl.train.distributed import initialize as initialize_distributed
from fdl.train.distributed import process_slice
from fdl.train.early_stopping import EarlyStopping
from fdl.train.loop import FitResult, evaluate, exit_status, fit
from fdl.train.mesh import make_mesh, replicated, batch_sharded, shard_batch, to_host
from fdl.train.metric_writer import MetricWriter, read_jsonl, write_json
from fdl.train.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from fdl.train.state import TrainState, create_train_state, num_params
from fdl.losses import classification_loss, reconstruction_loss, regression_loss
from fdl.train.step import make_eval_step, make_train_step, predict
from fdl.train.workdir import StaleLockWarning, WorkdirBusyError, WorkdirLock

__all__ = [
    "CheckpointError", "Checkpointer", "DamagedCheckpointWarning",
    "EarlyStopping", "FitResult", "MetricWriter", "OPTIMIZERS",
    "SCHEDULES", "TrainState", "batch_sharded", "classification_loss",
    "create_train_state", "evaluate", "exit_status", "fit", "initialize_distributed",
    "make_eval_step", "make_mesh", "make_optimizer", "make_schedule",
    "make_train_step", "num_params", "predict", "process_slice", "read_jsonl",
    "reconstruction_loss", "regression_loss", "replicated", "shard_batch", "to_host", "write_json",
    "StaleLockWarning", "WorkdirBusyError", "WorkdirLock",
]
