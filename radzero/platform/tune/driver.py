"""The sweep's driver: feature caches first, then one Ray Train run per Tune trial, then the
test-split scores, the ablation table and the registered winner.

Every trial is a Tune function (:func:`run_trial`) that runs the training job's driver
(:func:`radzero.platform.train.train`, the loop unchanged) with Tune's report callback, so each
epoch reaches Tune and ASHA can stop the trial. All trials at one resolution read one feature
cache, computed before the first trial. The Tune experiment lives in ``<out>/tune``; running the
same config again restores it: finished trials are kept, unfinished ones resume from their
Train run's last checkpoint.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from radzero import registry, storage
from radzero.config import from_dict, to_dict
from radzero.eval import ablation
from radzero.platform import outputs
from radzero.platform.evaluate import EvaluateJobConfig, evaluate
from radzero.platform.features import FeaturesJobConfig, cache_location, compute_features
from radzero.platform.lineage import model_card
from radzero.platform.train import TrainJobConfig, train
from radzero.platform.train.driver import _storage, export_best
from radzero.platform.train.worker import history_uri
from radzero.platform.tune.config import TuneJobConfig
from radzero.platform.tune.progress import SweepProgress, last_line
from radzero.platform.tune.space import ROW, Range, describe

log = logging.getLogger("radzero.tune")

# A test's fault injection: called as on_step(point, step, rank) on every Train worker.
TrialHook = Callable[[dict, int, int], None]
EXPERIMENT = "tune"  # the Tune experiment's folder under out


def sweep(
    config: TuneJobConfig,
    on_step: TrialHook | None = None,
    callbacks: Sequence[tune.Callback] = (),
) -> dict:
    """Run (or resume) the sweep, score its trials, write the ablation files, register the
    winner; return the sweep's summary (also ``<out>/summary.json``). ``callbacks`` join the
    Tuner's (a progress bar's)."""
    if not config.data:
        raise ValueError("config data: the preprocessing output to sweep on is required")
    _claim(config)
    caches = ensure_caches(config)
    grid = _run(config, on_step, callbacks)
    records = [score(config, result, caches) for result in grid]
    records.sort(key=lambda r: r["trial"])
    files = ablation.write(config.out, records, config.preset)
    winner = pick_winner(records, config.register.metric, config.register.mode)
    registered = register_winner(config, winner) if winner and config.register.name else None
    summary = {
        "name": config.name,
        "out": config.out,
        "trials": records,
        "winner": winner and winner["trial"],
        "registered": registered,
        "files": files,
    }
    storage.write_text(storage.join(config.out, "summary.json"), json.dumps(summary, indent=1))
    log.info(
        "tune %s: %d trials (%d errored); winner %s; %s",
        config.name,
        len(records),
        sum(r["status"] == "errored" for r in records),
        summary["winner"],
        files["md"],
    )
    return summary


def ensure_caches(config: TuneJobConfig) -> dict[int, str]:
    """Every resolution's feature cache, computed now where missing (once each); with
    ``train.source: images`` the prepared images at each resolution, checked."""
    base = config.base_job()
    prepared = outputs.read_summary(config.data, "preprocess")
    caches: dict[int, str] = {}
    for size in config.resolutions():
        if size not in prepared["resolutions"]:
            raise ValueError(
                f"the sweep trains at {size} px but {config.data} holds only "
                f"{prepared['resolutions']}; preprocess with resolutions including {size}"
            )
        if base.source != "features":
            continue
        vision = base.model_overrides.get("vision", {})
        job = from_dict(
            FeaturesJobConfig,
            config.features_job | {"model": base.model, "vision": vision, "resolution": size},
        )
        summary = compute_features(config.data, config.features or config.data, job)
        caches[size] = cache_location(
            config.data, config.features or config.data, job.vision_config(), size
        )
        log.info("tune: %d px reads the feature cache %s", size, summary["key"])
    return caches


def run_trial(params: dict, sweep: dict, on_step: TrialHook | None) -> None:
    """A Tune trial: the training job of ``params["point"]`` under the trial's id."""
    from ray.tune.integration.ray_train import TuneReportCallback

    config = from_dict(TuneJobConfig, sweep)
    point = params["point"]
    job = config.trial_job(point, name=tune.get_context().get_trial_id())
    hook = None if on_step is None else functools.partial(on_step, point)
    train(job, on_step=hook, callbacks=[TuneReportCallback()])


def _run(
    config: TuneJobConfig, on_step: TrialHook | None, callbacks: Sequence[tune.Callback]
) -> tune.ResultGrid:
    """Fit the Tune experiment, or restore and finish it when ``out`` already holds one."""
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, sweep=to_dict(config), on_step=on_step),
        {"CPU": config.trial_cpus},
    )
    fs, path = _storage(config.out)
    experiment = f"{path}/{EXPERIMENT}"
    base = config.base_job()
    if tune.Tuner.can_restore(experiment, storage_filesystem=fs):
        log.info("tune %s: resuming the sweep in %s", config.name, experiment)
        tuner = tune.Tuner.restore(
            experiment,
            trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
            storage_filesystem=fs,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"point": _param_space(config)},
            tune_config=_tune_config(config, base),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=path,
                storage_filesystem=fs,
                callbacks=[*_callbacks(config, base), *callbacks],
                failure_config=tune.FailureConfig(max_failures=0),
                verbose=0,
            ),
        )
    log.info(
        "tune %s: %s over %s, %d at a time",
        config.name,
        config.mode,
        ", ".join(config.space) or "the preset",
        config.max_concurrent_trials,
    )
    return tuner.fit()


def _param_space(config: TuneJobConfig) -> Any:
    if config.mode == "grid":
        return tune.grid_search(config.points())
    space: dict[str, Any] = {}
    for name, spec in config.parsed_space().items():
        if isinstance(spec, Range):
            space[name] = (tune.loguniform if spec.log else tune.uniform)(spec.low, spec.high)
        elif isinstance(spec, list):
            space[name] = tune.choice(spec)
        else:
            space[name] = spec
    return space


def _tune_config(config: TuneJobConfig, base: TrainJobConfig) -> tune.TuneConfig:
    mode = "max" if config.metric == "val_auc" else "min"
    if config.mode == "grid":
        return tune.TuneConfig(
            scheduler=FIFOScheduler(),
            max_concurrent_trials=config.max_concurrent_trials,
            trial_dirname_creator=_trial_folder,
        )
    searched = [n for n, s in config.parsed_space().items() if isinstance(s, list | Range)]
    points = [{f"point/{n}": p[n] for n in searched} for p in config.points()]
    return tune.TuneConfig(
        metric=config.metric,
        mode=mode,
        search_alg=OptunaSearch(seed=config.search.seed, points_to_evaluate=points or None),
        scheduler=ASHAScheduler(
            time_attr="epoch",  # training_iteration restarts at 1 when a trial resumes
            max_t=base.optim.epochs,
            grace_period=config.search.grace_period,
            reduction_factor=config.search.reduction_factor,
        ),
        num_samples=config.search.num_samples,
        max_concurrent_trials=config.max_concurrent_trials,
        trial_dirname_creator=_trial_folder,
    )


def _callbacks(config: TuneJobConfig, base: TrainJobConfig) -> list[tune.Callback]:
    mode = "max" if config.metric == "val_auc" else "min"
    callbacks: list[tune.Callback] = [
        SweepProgress(config.metric, mode, functools.partial(_trial_stopped, config))
    ]
    uri = config.tracking.mlflow_uri
    if uri:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        if uri == "local":
            if storage.is_s3(config.out):
                raise ValueError("config tracking.mlflow_uri: local needs a local out folder")
            uri = f"sqlite:///{storage.join(config.out, 'mlflow.db')}"
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=config.name))
    return callbacks


def score(config: TuneJobConfig, result: tune.Result, caches: dict[int, str]) -> dict:
    """One trial's row of the ablation: its point, status, best validation epoch and its best
    checkpoint's test-split metrics (evaluated once; a rerun reads them back)."""
    point = dict(result.config["point"])
    trial = result.metrics.get("trial_id") or _trial_id(result)
    job = config.trial_job(result.config["point"], name=trial)
    record: dict[str, Any] = {
        "trial": trial,
        "status": "errored" if result.error else "finished",
        "row": point.pop(ROW, None),
        "params": point,
        "epochs": _epochs_trained(job, result),
        "val_auc": None,
        "test": None,
        "error": last_line(str(result.error)) if result.error else "",
    }
    if result.error:
        return record
    if stopped_early(job, record["epochs"]):
        record["status"] = "stopped"
    model, best = export_best(job)
    record |= {"model": model, "best": best, "val_auc": best.get("val_auc")}
    out = storage.join(job.storage_path, trial, "eval")
    saved = storage.join(out, config.benchmark, "metrics.json")
    if storage.exists(saved):
        metrics = json.loads(storage.read_text(saved))
    else:
        metrics = evaluate(
            EvaluateJobConfig(
                model=model,
                benchmark=config.benchmark,
                root=config.benchmark_root,
                out=out,
                source="features" if job.source == "features" else "images",
                features=caches.get(int(job.model_config().vision.image_size or 0)),
                classes=job.classes,
                batch_size=config.evaluate_batch_size,
                num_gpus=config.evaluate_gpus,
                figure_examples=2,
            )
        )
    record["test"] = test_metrics(metrics)
    log.info("tune: trial %s on the test split: %s", trial, _line(record["test"]))
    return record


def _epochs_trained(job: TrainJobConfig, result: tune.Result) -> int | None:
    """The epochs in the trial's Train run history (a trial that finished before a restore
    may come back from Tune without its last result), else its last reported epoch."""
    uri = history_uri(job)
    if storage.exists(uri):
        history = json.loads(storage.read_text(uri))
        return history[-1]["epoch"] if history else None
    return result.metrics.get("epoch")


def _trial_stopped(config: TuneJobConfig, trial: Any, epochs: int) -> bool:
    job = config.trial_job(trial.config["point"], name=trial.trial_id)
    return stopped_early(job, epochs)


def stopped_early(job: TrainJobConfig, epochs: int | None) -> bool:
    """Whether the scheduler stopped this trial's run before its last epoch (a run that ends
    by itself, at its last epoch or by early stopping, writes its ``summary.json``)."""
    ended = storage.exists(storage.join(job.storage_path, job.name, "summary.json"))
    return not ended and (epochs or 0) < job.optim.epochs


def test_metrics(metrics: dict) -> dict[str, float | None]:
    """The ablation's test columns from an evaluation's ``metrics.json``, and the mean of the
    per-finding Dice thresholds chosen on validation."""
    pointing = metrics.get("pointing") or {}
    key = "accuracy" if metrics.get("benchmark") == "mscxr" else "mean_over_classes"
    segmentation = metrics.get("segmentation") or {}
    thresholds = [c["threshold"] for c in (segmentation.get("per_class") or {}).values()]
    return {
        "auc": (metrics.get("auc") or {}).get("macro"),
        "pointing": pointing.get(key),
        "pointing_chance": pointing.get("chance"),
        "dice": segmentation.get("dice"),
        # the served model's default segmentation threshold (docs/serving.md)
        "dice_threshold": sum(thresholds) / len(thresholds) if thresholds else None,
    }


def pick_winner(records: list[dict], metric: str, mode: str) -> dict | None:
    """The scored trial with the best ``metric`` (validation ``val_*`` or a test column)."""

    def value(record: dict) -> float:
        if metric.startswith("val_"):
            found = (record.get("best") or {}).get(metric)
        else:
            found = (record.get("test") or {}).get(metric.removeprefix("test_"))
        return math.nan if found is None else float(found)

    scored = [r for r in records if r["status"] != "errored" and not math.isnan(value(r))]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=value)


def register_winner(config: TuneJobConfig, winner: dict) -> dict:
    """Register the winner's model with its card (once per sweep: a rerun reads it back)."""
    done = storage.join(config.out, "registered.json")
    if storage.exists(done):
        saved = json.loads(storage.read_text(done))
        if saved["trial"] == winner["trial"]:
            return saved
    job = config.trial_job(dict(winner["params"], **_row(winner)), name=winner["trial"])
    card = model_card(
        job,
        winner["model"],
        validation=winner["best"],
        test=winner["test"],
        sweep={
            "name": config.name,
            "out": config.out,
            "trial": winner["trial"],
            "point": winner["params"],
            "selected_by": f"{config.register.metric} ({config.register.mode})",
        },
    )
    name = config.register.name
    version = registry.register(
        winner["model"], name, card, root=config.registry, aliases=("best",)
    )
    saved = {
        "trial": winner["trial"],
        "name": name,
        "version": version,
        "uri": registry.resolve(f"{name}@{version}", root=config.registry),
    }
    storage.write_text(done, json.dumps(saved, indent=1))
    log.info("tune: registered trial %s as %s@%d (best)", winner["trial"], name, version)
    return saved


def _claim(config: TuneJobConfig) -> None:
    """Keep ``out`` to one sweep: a rerun must bring the same config, as Tune restores it."""
    path = storage.join(config.out, "sweep.json")
    wanted = to_dict(config)
    if storage.exists(path):
        saved = json.loads(storage.read_text(path))
        if saved != json.loads(json.dumps(wanted)):
            changed = sorted(k for k in wanted if saved.get(k) != json.loads(json.dumps(wanted[k])))
            raise ValueError(
                f"{config.out} holds a sweep with another config (changed: {', '.join(changed)});"
                " rerun it unchanged to resume, or give another out"
            )
        return
    storage.write_text(path, json.dumps(wanted, indent=1))


def _row(record: dict) -> dict:
    return {ROW: record["row"]} if record.get("row") else {}


def _trial_id(result: tune.Result) -> str:
    """The trial's id from its folder's name (:func:`_trial_folder`), for a trial that never
    reported."""
    return result.path.rstrip("/").rsplit("/", 1)[-1]


def _trial_folder(trial: Any) -> str:
    return trial.trial_id


def _line(test: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in test.items() if v is not None)


__all__ = ["TrialHook", "describe", "ensure_caches", "sweep", "test_metrics"]
