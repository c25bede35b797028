"""Zero-shot evaluation of a trained model on one of the paper's benchmarks, with Ray Data.

The benchmark's manifest (:func:`radzero.data.benchmarks.read`) becomes a Ray Dataset whose
rows an actor pool scores (one model per actor, a GPU each when the cluster has GPUs): images
are read from storage and preprocessed as the model's config says, and
:func:`radzero.eval.scoring.score_batch` turns each batch into small records. The driver
gathers the records, computes the metrics (:func:`radzero.eval.scoring.summarise`) and writes
``metrics.json`` and a Markdown report with figures under ``<out>/<benchmark>/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch

from radzero import storage
from radzero.config import path_field, to_dict
from radzero.data import benchmarks
from radzero.data.images import read_image, to_pixels
from radzero.eval import report, scoring
from radzero.model import RadZero
from radzero.platform.session import actor_gpus

log = logging.getLogger(__name__)

CHEXPERT_COMPETITION = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
# The finding each segmentation benchmark is scored on, and whether its masks are boxes.
SEGMENTATION = {"siim": ("Pneumothorax", False), "rsna": ("Pneumonia", True)}


@dataclass
class EvaluateJobConfig:
    """What ``jobs/evaluate.py`` scores, and how.

    ``classes``: the classes scored by AUC (default: CheXpert's five competition classes, else
    every class of the benchmark with positives). ``templates``: the prompts of a class, their
    logits averaged. The Dice threshold is chosen on ``threshold_split``; when the benchmark
    has none, a seeded ``val_fraction`` of the evaluated images is held out for it.
    """

    model: str = path_field("")
    benchmark: str = ""
    root: str = path_field("")
    out: str = path_field("runs/eval")
    split: str = "test"
    threshold_split: str = "val"
    val_fraction: float = 0.2
    classes: list[str] | None = None
    templates: list[str] = field(default_factory=lambda: ["There is {}"])
    max_images: int | None = None
    batch_size: int = 16
    actors: int = 1
    num_cpus: float = 1.0
    num_gpus: float | None = None
    figure_examples: int = 6
    storage: storage.S3Options = field(default_factory=storage.S3Options)

    def __post_init__(self) -> None:
        if self.benchmark and self.benchmark not in benchmarks.NAMES:
            raise ValueError(
                f"config benchmark {self.benchmark!r} is not one of {benchmarks.NAMES}"
            )
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"config val_fraction must be in (0, 1), got {self.val_fraction}")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError("config templates must each hold '{}' where the class goes")
        if self.batch_size < 1 or self.actors < 1:
            raise ValueError("config batch_size and actors must be >= 1")


def evaluate(config: EvaluateJobConfig) -> dict:
    """Score ``config.model`` on ``config.benchmark``; write and return the metrics."""
    started = time.perf_counter()
    frame = benchmarks.read(config.benchmark, config.root)
    evaluated, threshold_rows, threshold_from = _splits(frame, config)
    classes = _classes(evaluated, config)
    segment, masks_from_boxes = SEGMENTATION.get(config.benchmark, (None, False))
    rows = pd.concat([evaluated.assign(part="evaluated"), threshold_rows.assign(part="threshold")])
    rows = rows.reset_index(drop=True)
    rows["position"] = range(len(rows))
    rows["truth"] = [_truth_json(row) for _, row in rows.iterrows()]
    log.info(
        "evaluate %s: %d images (%d for the Dice threshold), %d classes, %d actor(s)",
        config.benchmark,
        len(evaluated),
        len(threshold_rows),
        len(classes),
        config.actors,
    )
    model = RadZero.from_pretrained(config.model)
    builder = scoring.TruthBuilder(
        size=model.preprocess.image_size,
        template=config.templates[0],
        segment=(segment,) if segment else (),
        masks_from_boxes=masks_from_boxes,
        phrases=config.benchmark == "mscxr",
    )
    scorer_args = {
        "model": config.model,
        "classes": classes,
        "templates": list(config.templates),
        "builder": to_dict(builder),
    }
    scored = (
        ray.data.from_pandas(rows[["position", "image", "truth"]])
        .map_batches(
            Scorer,
            fn_constructor_kwargs=scorer_args,
            compute=ray.data.ActorPoolStrategy(size=config.actors),
            batch_size=config.batch_size,
            batch_format="pandas",
            num_cpus=config.num_cpus,
            num_gpus=actor_gpus(config.num_gpus),
        )
        .to_pandas()
        .sort_values("position")
    )
    records = rows.join(scored.set_index("position"), on="position")
    failed = records[records["error"] != ""]
    good = records[records["error"] == ""]
    evaluated_records = good[good["part"] == "evaluated"]
    metrics = scoring.summarise(
        evaluated_records,
        classes,
        threshold_records=good[good["part"] == "threshold"] if segment else None,
        by_frequency=config.benchmark == "padchest",
    )
    if segment:
        metrics["segmentation"] |= {
            "threshold_images": len(threshold_rows),
            "threshold_from": threshold_from,
        }
    out = storage.join(config.out, config.benchmark)
    metrics |= {
        "benchmark": config.benchmark,
        "model": config.model,
        "split": config.split,
        "images": len(evaluated_records),
        "failed": [
            {"image": image, "error": error}
            for image, error in zip(failed["image"], failed["error"], strict=True)
        ],
        "templates": list(config.templates),
        "seconds": round(time.perf_counter() - started, 1),
        "config": to_dict(config),
    }
    report.write(out, metrics, evaluated_records, model, builder, config.figure_examples)
    log.info("evaluate %s: %s -> %s", config.benchmark, report.headline(metrics), out)
    return metrics


class Scorer:
    """Ray Data actor: reads and preprocesses images, then scores them (one model per actor)."""

    def __init__(
        self, model: str, classes: list[str], templates: list[str], builder: dict[str, Any]
    ) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = RadZero.from_pretrained(model).to(self.device)
        self.classes, self.templates = classes, templates
        self.truth = scoring.TruthBuilder(**builder)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        """One record per row: its scores, or its ``error`` ("" when scored)."""
        pixels, truths, good = [], [], []
        records = [scoring.empty_record() | {"error": ""} for _ in range(len(batch))]
        for i, (image, truth) in enumerate(zip(batch["image"], batch["truth"], strict=True)):
            try:
                gray = read_image(storage.read_bytes(image), name=image)
            except (OSError, ValueError) as err:
                records[i]["error"] = str(err)
                continue
            pixels.append(to_pixels(gray, self.model.preprocess))
            truths.append(self.truth.build(json.loads(truth), gray.shape))
            good.append(i)
        if pixels:
            scored = scoring.score_batch(
                self.model,
                torch.stack(pixels).to(self.device),
                truths,
                self.classes,
                self.templates,
                self.truth.queries,
            )
            for i, record in zip(good, scored, strict=True):
                records[i] |= record
        return pd.DataFrame(records).assign(position=batch["position"].to_numpy())


def _truth_json(row: pd.Series) -> str:
    """A manifest row's ground truth as the JSON that :class:`scoring.TruthBuilder` reads."""
    truth = {
        "boxes": [dict(box) for box in _listed(row.get("boxes"))],
        "rle": [str(rle) for rle in _listed(row.get("rle"))],
    }
    for key in ("height", "width"):
        value = row.get(key)
        truth[key] = None if value is None or pd.isna(value) else int(value)
    return json.dumps(truth)


def _listed(value: object) -> list:
    """A list cell (None or NaN when the benchmark has no such column or value)."""
    return [] if value is None or (isinstance(value, float) and np.isnan(value)) else list(value)


def _splits(
    frame: pd.DataFrame, config: EvaluateJobConfig
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The evaluated rows, the rows the Dice threshold is chosen on, and where those are from."""
    evaluated = frame[frame["split"] == config.split]
    if evaluated.empty:
        raise ValueError(
            f"{config.benchmark} under {config.root} has no {config.split!r} rows "
            f"(splits: {sorted(frame['split'].unique())})"
        )
    threshold = frame[frame["split"] == config.threshold_split]
    source = f"the {config.threshold_split!r} split"
    if config.benchmark not in SEGMENTATION:
        threshold, source = frame.iloc[:0], "no threshold"
    elif threshold.empty:
        held = np.array(
            [_fraction(image, config.root) < config.val_fraction for image in evaluated["image"]]
        )
        evaluated, threshold = evaluated[~held], evaluated[held]
        source = f"held out: {config.val_fraction:.0%} of the {config.split!r} images"
    if config.max_images is not None:
        evaluated = evaluated.head(config.max_images)
        threshold = threshold.head(config.max_images)
    return evaluated, threshold, source


def _fraction(image: str, root: str) -> float:
    """A stable number in [0, 1) per image, from its path under ``root``: the same images are
    held out wherever the benchmark lives."""
    relative = image[len(root) :] if image.startswith(root) else image
    return int(hashlib.sha256(relative.strip("/").encode()).hexdigest()[:8], 16) / 2**32


def _classes(evaluated: pd.DataFrame, config: EvaluateJobConfig) -> list[str]:
    labels = list(benchmarks.READERS[config.benchmark].pathologies)
    if config.classes:
        missing = sorted(set(config.classes) - set(labels))
        if missing:
            raise ValueError(f"config classes {missing} are not classes of {config.benchmark}")
        return list(config.classes)
    if config.benchmark == "chexpert":
        return list(CHEXPERT_COMPETITION)
    return [c for c in labels if (evaluated[c] == 1).any()]
