"""Ray Train: RadZero's trainable part on frozen-backbone tokens, with a global-batch MP-NCE.

A ``TorchTrainer`` runs :func:`train_loop` on every worker. Each worker streams its shard of the
training split (cached tokens from ``jobs/features.py``, or prepared images that it encodes with
the frozen backbone) through ``iter_torch_batches`` and calls the plain-PyTorch
:func:`radzero.model.training.train_step`, whose loss gathers every worker's encodings, so each
worker sees the negatives of all workers. After each epoch the workers score their shares of the
validation split (loss and zero-shot macro AUC) and gather the results, so every worker has the
same numbers and early stopping agrees without a message; then rank 0 reports a checkpoint
(trainable weights, optimizer, scheduler, step and early stopping; see
:mod:`radzero.model.checkpoint`). Ray keeps the best ``checkpoint.keep``; the best is exported
with ``save_pretrained`` to ``<storage_path>/<name>/model``. A worker failure restarts the group
from the last checkpoint; running the same ``name`` and ``storage_path`` again resumes a run
whose driver died.

Modules: :mod:`~.config` (the job's config), :mod:`~.driver` (:func:`train`), :mod:`~.worker`
(the worker loop and validation), :mod:`~.data` (datasets, their ingest and the collate step),
:mod:`~.report` (what an epoch reports), :mod:`~.callbacks` (TensorBoard).
"""

from radzero.platform.train.callbacks import TensorBoardCallback
from radzero.platform.train.config import CheckpointSection, ScalingSection, TrainJobConfig
from radzero.platform.train.data import BatchCollate, TrainValIngest
from radzero.platform.train.driver import train
from radzero.platform.train.report import REPORT_METRICS, EpochReport
from radzero.platform.train.worker import StepHook, train_loop, validate

__all__ = [
    "REPORT_METRICS",
    "BatchCollate",
    "CheckpointSection",
    "EpochReport",
    "ScalingSection",
    "StepHook",
    "TensorBoardCallback",
    "TrainJobConfig",
    "TrainValIngest",
    "train",
    "train_loop",
    "validate",
]
