"""Zero-shot evaluation of a trained model on a benchmark, with Ray Data.

The benchmark's manifest (:func:`radzero.data.benchmarks.read`) and its protocol
(:func:`radzero.eval.protocol.plan`: evaluated rows, threshold rows, classes, segmented
findings) decide what is scored. An actor pool scores the rows (one model per actor, a GPU each
when the cluster has GPUs), either from the images (``source: images``: read from storage and
preprocessed as the model's config says) or from a feature cache of the same images
(``source: features``: the frozen backbone's tokens from ``jobs/features.py``, matched to the
manifest by image URI). :func:`radzero.eval.scoring.score_batch` turns each batch into small
records; the driver computes the metrics (:func:`radzero.eval.scoring.summarise`) and writes
``metrics.json`` and a Markdown report with figures under ``<out>/<benchmark>/``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import ray
import torch
from ray.data.expressions import col

from radzero import registry, storage
from radzero.config import model_field, path_field, to_dict
from radzero.data import benchmarks
from radzero.data.images import read_image, stretch_contrast, to_pixels
from radzero.eval import report, scoring
from radzero.eval.protocol import plan
from radzero.model import RadZero
from radzero.platform import outputs
from radzero.platform.features import backbone_name, read_features
from radzero.platform.session import actor_pool_options, default_device

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]


@dataclass
class EvaluateJobConfig:
    """What ``jobs/evaluate.py`` scores, and how.

    ``source: features`` scores the tokens cached under ``features`` (a finished
    ``jobs/features.py`` output of the same backbone and resolution) instead of the images.
    ``classes``: the classes scored by AUC (default: CheXpert's five competition classes, else
    every class of the benchmark with positives). ``templates``: the prompts of a class, their
    logits averaged (default: the model's own). The Dice threshold is chosen on
    ``threshold_split``; when the benchmark has none, a seeded ``val_fraction`` of the
    evaluated images is held out for it. ``stretch`` min-max stretches each image to the full
    grey range before preprocessing, as the authors' benchmark loader did (docs/reproduce.md);
    it needs ``source: images``.
    """

    model: str = model_field("")
    registry: str | None = path_field(None)  # for a reference; None: $RADZERO_REGISTRY
    benchmark: str = ""
    root: str = path_field("")
    out: str = path_field("runs/eval")
    source: Literal["images", "features"] = "images"
    features: str | None = path_field(None)
    split: Split = "test"
    threshold_split: Split = "val"
    val_fraction: float = 0.2
    classes: list[str] | None = None
    templates: list[str] | None = None
    max_images: int | None = None
    batch_size: int = 16
    actors: int = 1
    num_cpus: float = 1.0
    num_gpus: float | None = None
    figure_examples: int = 6
    stretch: bool = False
    storage: storage.S3Options = field(default_factory=storage.S3Options)

    def __post_init__(self) -> None:
        if self.benchmark and self.benchmark not in benchmarks.READERS:
            raise ValueError(
                f"config benchmark {self.benchmark!r} is not one of {sorted(benchmarks.READERS)}"
            )
        if self.stretch and self.source != "images":
            raise ValueError("config stretch needs source: images (cached tokens are unstretched)")
        if self.source == "features" and not self.features:
            raise ValueError("config source: features needs features (a feature-cache folder)")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"config val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.templates is not None and (
            not self.templates or any("{}" not in t for t in self.templates)
        ):
            raise ValueError("config templates must each hold '{}' where the class goes")
        if self.batch_size < 1 or self.actors < 1:
            raise ValueError("config batch_size and actors must be >= 1")
        if self.figure_examples < 0:
            raise ValueError("config figure_examples must be >= 0 (0: no overlay figures)")


def evaluate(config: EvaluateJobConfig, training: dict | None = None) -> dict:
    """Score ``config.model`` on ``config.benchmark``; write and return the metrics.

    ``training`` (a training run's summary: ``history``, ``best``) adds its curves to the report.
    """
    started = time.perf_counter()
    frame = benchmarks.read(config.benchmark, config.root)
    protocol = plan(
        frame,
        config.benchmark,
        config.root,
        config.split,
        config.threshold_split,
        config.val_fraction,
        config.classes,
        config.max_images,
    )
    uri = config.model
    if registry.is_reference(uri):
        uri = registry.resolve(uri, config.registry)
    model = RadZero.from_pretrained(uri)
    templates = list(config.templates or model.config.templates)
    builder = protocol.truth_builder(model.preprocess.image_size, templates[0])
    rows = pd.concat(
        [protocol.evaluated.assign(part="evaluated"), protocol.threshold.assign(part="threshold")]
    ).reset_index(drop=True)
    rows["position"] = np.arange(len(rows))
    truths = [truth_fields(row) for row in rows.to_dict("records")]
    log.info(
        "evaluate %s: %d images (%d for the Dice threshold) from %s, %d classes, %d actor(s)",
        config.benchmark,
        len(protocol.evaluated),
        len(protocol.threshold),
        config.source,
        len(protocol.classes),
        config.actors,
    )
    scored = _score(config, uri, model, rows, truths, protocol.classes, templates, builder)
    records = rows.join(scored.set_index("position"), on="position")
    records["error"] = records["error"].fillna("not in the feature cache")
    failed = records[records["error"] != ""]
    good = records[records["error"] == ""]
    evaluated = good[good["part"] == "evaluated"]
    metrics = scoring.summarise(
        evaluated,
        protocol.classes,
        threshold_records=good[good["part"] == "threshold"] if protocol.segmentation else None,
        by_frequency=config.benchmark == "padchest",
    )
    if protocol.segmentation:
        metrics["segmentation"] |= {
            "threshold_images": len(protocol.threshold),
            "threshold_from": protocol.threshold_from,
        }
    metrics |= {
        "benchmark": config.benchmark,
        "model": config.model,
        "model_uri": uri,
        "split": config.split,
        "source": config.source,
        "images": len(evaluated),
        "failed": [
            {"image": image, "error": error}
            for image, error in zip(failed["image"], failed["error"], strict=True)
        ],
        "templates": templates,
        "seconds": round(time.perf_counter() - started, 1),
        "config": to_dict(config),
    }
    if training is not None:
        metrics["training"] = {"best": training["best"], "history": training["history"]}
    out = storage.join(config.out, config.benchmark)
    evaluated_truths = [truths[p] for p in evaluated["position"]]
    report.write(out, metrics, evaluated, evaluated_truths, model, builder, config.figure_examples)
    log.info("evaluate %s: %s -> %s", config.benchmark, report.headline(metrics), out)
    return metrics


def truth_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What :meth:`scoring.TruthBuilder.build` reads of a manifest row (NaN cells: absent)."""
    return {
        "boxes": [dict(box) for box in _listed(row.get("boxes"))],
        "rle": [str(rle) for rle in _listed(row.get("rle"))],
        "masks": row.get("masks") if isinstance(row.get("masks"), dict) else {},
        "height": _size(row.get("height")),
        "width": _size(row.get("width")),
    }


def _listed(value: object) -> list:
    """A list cell (None or NaN when the benchmark has no such column or value)."""
    return [] if value is None or (isinstance(value, float) and np.isnan(value)) else list(value)


def _size(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _score(
    config: EvaluateJobConfig,
    uri: str,
    model: RadZero,
    rows: pd.DataFrame,
    truths: list[dict[str, Any]],
    classes: list[str],
    templates: list[str],
    builder: scoring.TruthBuilder,
) -> pd.DataFrame:
    """One record per scored row (``position``, the scores, ``error``); the actors load the
    model from ``uri``."""
    if config.source == "features":
        cached = _cached_tokens(config, model, list(rows["image"]))
        by_image: dict[str, list[int]] = {}
        for position, image in zip(rows["position"], rows["image"], strict=True):
            by_image.setdefault(image, []).append(int(position))
    else:
        cached = ray.data.from_pandas(rows[["position", "image"]])
        by_image = None
    scored = cached.map_batches(
        Scorer,
        fn_constructor_kwargs={
            "model": uri,
            "classes": classes,
            "templates": templates,
            "builder": to_dict(builder),
            "truths": truths,
            "by_image": by_image,
            "stretch": config.stretch,
        },
        batch_size=config.batch_size,
        batch_format="pandas",
        **actor_pool_options(config.actors, config.num_cpus, config.num_gpus),
    )
    records = scored.to_pandas()
    if records.empty:
        return pd.DataFrame({"position": pd.Series(dtype=np.int64), "error": pd.Series(dtype=str)})
    return records.sort_values("position")


def _cached_tokens(
    config: EvaluateJobConfig, model: RadZero, images: list[str]
) -> ray.data.Dataset:
    """The cached rows of ``images`` from a feature cache computed by the model's backbone."""
    summary = outputs.read_summary(config.features, "features")
    expected = (backbone_name(model.config.vision), model.preprocess.image_size)
    if (summary["backbone"], summary["resolution"]) != expected:
        raise ValueError(
            f"the feature cache {config.features} holds {summary['backbone']} tokens at "
            f"{summary['resolution']} px, but {config.model} needs {expected[0]} at "
            f"{expected[1]} px"
        )
    return (
        read_features(config.features)
        .select_columns(["source", "height", "width", "tokens"])
        .filter(expr=col("source").is_in(sorted(set(images))))
    )


class Scorer:
    """Ray Data actor: scores rows of images or of cached tokens (one model per actor).

    ``truths`` is every row's ground truth (:func:`truth_fields`) by position; with
    ``by_image`` (image URI -> positions) the batches hold cached tokens with their ``source``
    image, else ``position`` and ``image``.
    """

    def __init__(
        self,
        model: str,
        classes: list[str],
        templates: list[str],
        builder: dict[str, Any],
        truths: list[dict[str, Any]],
        by_image: dict[str, list[int]] | None,
        stretch: bool = False,
    ) -> None:
        self.device = default_device()
        self.stretch = stretch
        self.model = RadZero.from_pretrained(model).to(self.device)
        self.classes, self.templates = classes, templates
        self.builder = scoring.TruthBuilder(**builder)
        self.truths, self.by_image = truths, by_image

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        """One record per row: its scores, or its ``error`` ("" when scored)."""
        if self.by_image is not None:
            return self._score_tokens(batch)
        positions, pixels, truths, errors = [], [], [], {}
        for position, image in zip(batch["position"], batch["image"], strict=True):
            try:
                gray = read_image(storage.read_bytes(image), name=image)
            except (OSError, ValueError) as err:
                errors[int(position)] = str(err)
                continue
            positions.append(int(position))
            pixels.append(
                to_pixels(stretch_contrast(gray) if self.stretch else gray, self.model.preprocess)
            )
            truths.append(self.builder.build(self.truths[int(position)], gray.shape))
        records = self._records(positions, truths, images=torch.stack(pixels) if pixels else None)
        failed = [scoring.empty_record() | {"position": p, "error": e} for p, e in errors.items()]
        return pd.DataFrame(records + failed)

    def _score_tokens(self, batch: pd.DataFrame) -> pd.DataFrame:
        positions, rows, truths = [], [], []
        for i, image in enumerate(batch["source"]):
            shape = (int(batch["height"].iloc[i]), int(batch["width"].iloc[i]))
            for position in self.by_image.get(image, []):
                positions.append(position)
                rows.append(i)
                truths.append(self.builder.build(self.truths[position], shape))
        tokens = np.stack([np.asarray(batch["tokens"].iloc[i], np.float32) for i in rows])
        return pd.DataFrame(self._records(positions, truths, features=torch.from_numpy(tokens)))

    def _records(
        self,
        positions: list[int],
        truths: list[scoring.Truth],
        images: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> list[dict]:
        if not positions:
            return []
        scored = scoring.score_batch(
            self.model,
            None if images is None else images.to(self.device),
            truths,
            self.classes,
            self.templates,
            self.builder.queries,
            features=None if features is None else features.to(self.device),
        )
        return [r | {"position": p, "error": ""} for p, r in zip(positions, scored, strict=True)]
