"""The embedded-default demo: every stage of the platform on this machine, end to end.

Phantoms -> Ray Data preprocessing -> the frozen backbone's token cache -> a small Ray Tune
sweep of the paper's ablation rows (each trial a Ray Train run; the demo's own configuration,
row (d), is one of them, so the sweep is the demo's training) -> the winner registered ->
evaluated zero-shot on the held-out split -> served with Ray Serve -> queried over HTTP as a
client would -> ``out/report.md`` with every stage's figures -> the service shut down. A local
Ray on 127.0.0.1 and a local folder as storage; a rerun continues from what finished.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import serve

from radzero import storage
from radzero.config import deep_merge, from_dict, path_field, to_dict
from radzero.data import phantom
from radzero.model import resolve_model_config
from radzero.model.training import TrainConfig
from radzero.platform import demo_report
from radzero.platform.console import Console, EpochProgress
from radzero.platform.evaluate import EvaluateJobConfig, evaluate
from radzero.platform.features import FeaturesJobConfig, compute_features
from radzero.platform.preprocess import PreprocessJobConfig, preprocess
from radzero.platform.serve import ServeJobConfig, deploy
from radzero.platform.serve.client import ask
from radzero.platform.session import connect, free_port
from radzero.platform.tune import TuneJobConfig, sweep

log = logging.getLogger(__name__)

STAGES = (
    "phantoms",
    "preprocess",
    "features",
    "sweep",
    "evaluate",
    "serve",
    "query",
    "report",
    "shutdown",
)
REGISTERED_NAME = "radzero-demo"


@dataclass
class DemoConfig:
    """What the demo generates, which ablation rows its sweep trains and how, what it serves
    and where it writes (``out``)."""

    out: str = path_field("runs/demo")
    count: int = 2000
    size: int = 224
    seed: int = 0
    prevalence: float = 0.3
    model: str = "radzero-tiny-local"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    optim: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=4, batch_size=32, lr=2e-3, warmup_steps=20, mask_false_negatives=True
        )
    )
    # The paper's ablation rows the sweep trains (docs/tuning.md); (d) is the demo's model.
    rows: list[str] = field(default_factory=lambda: ["(a)", "(b)", "(d)"])
    trials_at_once: int = 3
    figure_examples: int = 6
    queries: int = 4  # held-out images sent to the service
    port: int | None = None  # the service's port on 127.0.0.1 (None: a free one)
    storage: storage.S3Options = field(default_factory=storage.S3Options)

    def __post_init__(self) -> None:
        if self.count < 50:
            raise ValueError(
                f"config count must be >= 50 (train, val and test splits), got {self.count}"
            )
        if self.trials_at_once < 1 or self.queries < 1:
            raise ValueError("config trials_at_once and queries must be >= 1")

    def overrides(self) -> dict[str, Any]:
        """The model's overrides with the demo's image size."""
        return deep_merge(self.model_overrides, {"vision": {"image_size": self.size}})

    def sweep_config(self, data: str, phantoms: str) -> TuneJobConfig:
        """The sweep: the preset's ``rows`` at ``size``, one Train worker per trial, the
        winner by validation AUC registered as ``radzero-demo``."""
        out = Path(self.out).resolve()
        fields = {
            "name": "demo",
            "data": data,
            "benchmark": "phantom",
            "benchmark_root": phantoms,
            "registry": str(out / "registry"),
            "mode": "grid",
            "preset": "paper-ablation",
            "rows": self.rows,
            "train": {
                "model": self.model,
                "model_overrides": self.overrides(),
                "source": "features",
                "optim": to_dict(self.optim),
                "classes": list(phantom.FINDINGS),
                "checkpoint": {"metric": "val_auc", "mode": "max", "keep": 1},
                "scaling": {"num_workers": 1, "cpus_per_worker": 0.2},
            },
            # 0.3 CPU a trial: three side by side leave a CPU for Ray Data's reads
            "trial_cpus": 0.1,
            "max_concurrent_trials": self.trials_at_once,
            "register": {"name": REGISTERED_NAME, "metric": "val_auc"},
            "storage": to_dict(self.storage),
        }
        # One folder per sweep config: a rerun resumes it, a changed config starts its own.
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
        return from_dict(TuneJobConfig, fields | {"out": str(out / "tune" / digest)})


def prepare_phantoms(out: Path, config: DemoConfig, console: Console) -> Path:
    """The phantom folder, generated once per (count, size, seed, prevalence, generator)."""
    folder = out / "phantoms"
    stamp = folder / "generator.json"
    wanted = {k: getattr(config, k) for k in ("count", "size", "seed", "prevalence")}
    wanted["generator_version"] = phantom.GENERATOR_VERSION
    with console.stage("phantoms", config.count, "images") as stage:
        if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
            stage.result = f"reusing {folder}"
            return folder
        phantom.write_dataset(
            folder,
            config.count,
            size=config.size,
            seed=config.seed,
            prevalence=config.prevalence,
            progress=stage.update,
        )
        stamp.write_text(json.dumps(wanted))
        stage.result = f"{config.count} images at {config.size} px -> {folder}"
    return folder


def run_demo(config: DemoConfig | None = None, console: Console | None = None) -> dict:
    """Run every stage and return the demo's summary (also ``out/summary.json``).

    ``console`` draws the stages (default: lines on stderr). A failing stage raises
    :class:`~radzero.platform.console.StageFailed` naming it.
    """
    config = config or DemoConfig()
    console = console or Console(sys.stderr, len(STAGES))
    out = Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    resolve_model_config(config.model, config.overrides())  # a bad name fails before any work
    logs = f"{out / 'logs'} and Ray's session logs"
    phantoms = prepare_phantoms(out, config, console)
    connect()
    data = str(out / "data")
    with console.stage("preprocess", config.count, "images", "prepare", logs) as stage:
        prepared = preprocess(str(phantoms), data, PreprocessJobConfig(resolutions=[config.size]))
        splits = ", ".join(f"{name} {count}" for name, count in prepared["splits"].items())
        stage.result = f"{prepared['rows_out']} images ({splits}) -> {data}"
    with console.stage("features", prepared["rows_out"], "images", "TokenEncoder", logs) as stage:
        vision = config.overrides()["vision"]
        cache = compute_features(data, data, FeaturesJobConfig(model=config.model, vision=vision))
        stage.result = f"{cache['images']} images' tokens -> {data}/features/{cache['key']}"
    tune_config = config.sweep_config(data, str(phantoms))
    trials = len(tune_config.points())
    with console.stage("sweep", trials * config.optim.epochs, "epochs", logs=logs) as stage:
        swept = sweep(tune_config, callbacks=[EpochProgress()])
        if not swept["registered"]:
            raise RuntimeError(f"no trial finished; see {tune_config.out}")
        winner = next(r for r in swept["trials"] if r["trial"] == swept["winner"])
        registered = swept["registered"]
        stage.result = (
            f"{trials} trials -> {swept['files']['md']}; winner {winner['row']} "
            f"(val AUC {winner['val_auc']:.3f}) registered as "
            f"{registered['name']}@{registered['version']} (best)"
        )
    training = json.loads(
        storage.read_text(storage.join(tune_config.trials_path(), winner["trial"], "summary.json"))
    )
    test_images = _split_rows(phantoms, "test")
    with console.stage("evaluate", None, "images", "Scorer", logs) as stage:
        metrics = evaluate(
            EvaluateJobConfig(
                model=registered["uri"],
                benchmark="phantom",
                root=str(phantoms),
                out=str(out),
                source="features",
                features=storage.join(data, "features", cache["key"]),
                classes=list(phantom.FINDINGS),
                figure_examples=config.figure_examples,
            ),
            training=training,
        )
        stage.result = (
            f"{headline_text(metrics)} on {len(test_images)} held-out images -> {out / 'phantom'}"
        )
    serving = from_dict(
        ServeJobConfig,
        {
            "model": f"{REGISTERED_NAME}@best",
            "registry": str(out / "registry"),
            "port": config.port or free_port(),
            "autoscaling": {"min_replicas": 1, "max_replicas": 1},
        },
    )
    url = f"http://{serving.host}:{serving.port}"
    try:
        with console.stage("serve", logs=logs) as stage:
            deploy(serving)
            stage.result = f"{serving.model} at {url}/ (API docs {url}/docs)"
        with console.stage("query", config.queries, "images", logs=logs) as stage:
            answers = query_service(url, phantoms, test_images[: config.queries], out, stage.update)
            stage.result = (
                f"classify + ground of {len(answers)} held-out images -> {out / 'served'}"
            )
        summary = {
            "out": str(out),
            "headline": headline(metrics),
            "sweep": {k: swept[k] for k in ("out", "winner", "registered", "files")},
            "trials": [demo_report.trial_row(r) for r in swept["trials"]],
            "served": answers,
            "stages": console.finished,
            "seconds": round(time.perf_counter() - started, 1),
        }
        with console.stage("report", logs=logs) as stage:
            report = demo_report.write(out, summary, metrics, swept)
            (out / "summary.json").write_text(json.dumps(summary, indent=1))
            stage.result = str(report)
    finally:
        with console.stage("shutdown", logs=logs) as stage:
            serve.shutdown()
            stage.result = "the service is down (`make serve` serves the model again)"
    elapsed = time.perf_counter() - started
    console.line(f"demo: {headline_text(metrics)} in {elapsed:.0f} s; open {report}")
    return summary


def query_service(
    url: str, phantoms: Path, rows: list[dict], out: Path, progress: Any
) -> list[dict[str, Any]]:
    """Classify and ground each held-out image over HTTP; save the overlays under
    ``out/served``; return per image its findings, the service's answers and the peaks' hits."""
    folder = out / "served"
    folder.mkdir(exist_ok=True)
    answers = []
    for done, row in enumerate(rows, start=1):
        image = phantoms / row["image"]
        present = [name for name in phantom.FINDINGS if row[name] == "1"]
        classified = ask(url, "/v1/classify", image, findings=list(phantom.FINDINGS))
        phrases = present or ["pleural effusion"]
        grounded = ask(url, "/v1/ground", image, phrases=phrases, overlays=True)
        boxes = json.loads(row["boxes"])
        grounding = []
        for phrase, answer in zip(phrases, grounded["phrases"], strict=True):
            overlay = folder / f"{image.stem}_{phrase.replace(' ', '_')}.png"
            overlay.write_bytes(demo_report.png_bytes(answer["overlay_png"]))
            grounding.append(
                {
                    "phrase": phrase,
                    "probability": answer["probability"],
                    "peak": answer["peak"],
                    "hit": _inside(answer["peak"], [b for b in boxes if b["finding"] == phrase]),
                    "overlay": str(overlay.relative_to(out)),
                }
            )
        answers.append(
            {
                "image": row["image"],
                "present": present,
                "probabilities": {f["finding"]: f["probability"] for f in classified["findings"]},
                "grounding": grounding,
                "model": classified["model"],
                "elapsed_ms": classified["elapsed_ms"] + grounded["elapsed_ms"],
            }
        )
        progress(done)
    (folder / "answers.json").write_text(json.dumps(answers, indent=1))
    return answers


def _inside(peak: dict, boxes: list[dict]) -> bool | None:
    """Whether the peak falls in one of the finding's boxes (None: the finding has none)."""
    if not boxes:
        return None
    x, y = peak["x"], peak["y"]
    return any(b["x1"] <= x <= b["x2"] and b["y1"] <= y <= b["y2"] for b in boxes)


def _split_rows(phantoms: Path, split: str) -> list[dict]:
    with (phantoms / "manifest.csv").open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == split]


def headline(metrics: dict) -> dict[str, float]:
    """The demo's three numbers: macro AUC, pointing game (mean over findings), Dice."""
    return {
        "auc": metrics["auc"]["macro"],
        "pointing_game": metrics["pointing"]["mean_over_classes"],
        "dice": metrics["segmentation"]["dice"],
    }


def headline_text(metrics: dict) -> str:
    numbers = headline(metrics)
    return (
        f"AUC {numbers['auc']:.3f}, pointing game {numbers['pointing_game']:.3f}, "
        f"Dice {numbers['dice']:.3f}"
    )


def demo_config(overrides: dict | None = None) -> DemoConfig:
    """The default DemoConfig with nested overrides applied; unknown keys are rejected."""
    return from_dict(DemoConfig, deep_merge(to_dict(DemoConfig()), overrides or {}))


__all__ = ["DemoConfig", "demo_config", "headline", "run_demo"]
