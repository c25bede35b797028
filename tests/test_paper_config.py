"""configs/paper.yaml states the authors' setup (docs/method.md) end to end, read as each
`radzero <command> --config configs/paper.yaml` reads it. Configs only: no hub weights, no Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from radzero import storage
from radzero.cli import features as features_command
from radzero.cli import preprocess as preprocess_command
from radzero.cli import train as train_command
from radzero.cli import tune as tune_command
from radzero.cli.options import command_parser, parse_config
from radzero.data.benchmarks import MSCXR
from radzero.model import RadZeroConfig
from radzero.platform.features import FeaturesJobConfig
from radzero.platform.preprocess import PreprocessJobConfig
from radzero.platform.train import TrainJobConfig
from radzero.platform.tune.config import TuneJobConfig

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper.yaml"
BACKBONE = "StanfordAIMI/dinov2-base-xray-224"
TEXT_ENCODER = "sentence-transformers/all-mpnet-base-v2"


def paper(command, config: type, section: str):
    """The config that `radzero <section> --config configs/paper.yaml` runs with."""
    parser = command_parser(section, command.__doc__, config)
    return parse_config(parser, config, ["--config", str(PAPER)], section)[1]


@pytest.fixture(scope="module")
def train() -> TrainJobConfig:
    return paper(train_command, TrainJobConfig, "train")


def check_model(model: RadZeroConfig) -> None:
    assert (model.vision.checkpoint, model.vision.image_size) == (BACKBONE, 518)
    assert model.align.layers == 2
    assert (model.text.checkpoint, model.text.trainable) == (TEXT_ENCODER, True)


def test_the_model_is_xray_dinov2_at_518_px_with_two_align_layers_and_mpnet_fine_tuned(
    train,
) -> None:
    assert train.model == "radzero-xray-dinov2"
    check_model(train.model_config())  # the architecture JSON with the job's overrides


def check_optimisation(job: TrainJobConfig) -> None:
    optim = job.optim
    assert (optim.lr, optim.text_lr, optim.weight_decay, optim.warmup_steps) == (
        1e-4,
        None,  # the text encoder trains at the same rate
        0.05,
        50,
    )
    assert (optim.epochs, optim.grad_clip, optim.precision) == (20, 1.0, "bf16")
    assert (job.scaling.num_workers, job.scaling.use_gpu) == (4, True)
    assert optim.batch_size == 256 and optim.batch_size // job.scaling.num_workers == 64
    assert job.patience == 5
    assert (job.checkpoint.metric, job.checkpoint.mode) == ("val_loss", "min")


def test_training_is_the_authors_optimisation_on_4_gpus_with_early_stopping_on_val_loss(
    train,
) -> None:
    check_optimisation(train)
    assert train.source == "features"


def test_every_sweep_trial_trains_as_the_train_job_does(train) -> None:
    tune = paper(tune_command, TuneJobConfig, "tune")
    base = tune.base_job()
    check_optimisation(base)
    assert base.optim == train.optim and base.model == train.model
    assert tune.parsed_space()["resolution"] == [224, 518]  # the ablation's two sizes


def test_preprocessing_extracts_sentences_with_the_llm_and_excludes_mscxr(train) -> None:
    job = paper(preprocess_command, PreprocessJobConfig, "preprocess")
    assert job.sentences == "llm" and job.llm is not None
    assert job.llm.model_source == "meta-llama/Llama-3.3-70B-Instruct"
    assert 518 in job.resolutions and job.out == train.data
    # MS-CXR's label file in the MIMIC-CXR root, where the MS-CXR reader also looks for it.
    (mscxr,) = job.exclude
    assert storage.parent(mscxr) == job.manifest
    assert mscxr.rsplit("/", 1)[1] == MSCXR.files[0]


def test_the_feature_cache_holds_the_backbone_tokens_at_518_px(train) -> None:
    job = paper(features_command, FeaturesJobConfig, "features")
    assert job.model == train.model and job.prepared == train.data
    vision = job.vision_config()
    assert (vision.checkpoint, vision.image_size) == (BACKBONE, 518)
