"""Zero-shot evaluation of a trained model on one of the paper's benchmarks, with Ray Data.

NAME is one of chexpert, chestxray14, padchest, openi, chestxdet10, mscxr, siim, rsna (or
phantom); ROOT holds that dataset's files as published. MODEL is a save_pretrained folder or a
registry reference (a converted authors' model: NAME@authors). --features scores the backbone
tokens cached by `radzero features` (its OUT/features/<key>) instead of the images; --set
stretch=true min-max stretches each image first, as the authors' benchmark loader did. Writes
OUT/NAME/metrics.json, report.md and figures/*.png (OUT defaults to runs/eval). Works directly
and through `ray job submit`.
"""

from __future__ import annotations

import json

from radzero.cli.options import command_parser, require_options
from radzero.eval.report import headline
from radzero.platform.evaluate import EvaluateJobConfig, evaluate
from radzero.platform.session import start_job


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("evaluate", __doc__, EvaluateJobConfig)
    parser.add_argument(
        "--model",
        help="a model folder (save_pretrained), local or s3://, or a registry reference "
        "(name@best, name@authors)",
    )
    parser.add_argument(
        "--registry", help="the registry a reference names (default: $RADZERO_REGISTRY)"
    )
    parser.add_argument("--benchmark", help="the benchmark's name")
    parser.add_argument("--root", help="the folder or s3:// URI holding the benchmark's files")
    parser.add_argument("--out", help="output URI (results under OUT/NAME/)")
    parser.add_argument("--features", help="a feature cache of these images: score its tokens")
    options = {name: name for name in ("model", "registry", "benchmark", "root", "out", "features")}
    args, config = start_job(parser, EvaluateJobConfig, argv, "evaluate", options)
    if args.features is not None:
        config.source = "features"
    require_options(parser, config, "model", "benchmark", "root")
    metrics = evaluate(config)
    print(f"evaluate {config.benchmark}: {headline(metrics)} -> {config.out}/{config.benchmark}")
    print(json.dumps({k: v for k, v in metrics.items() if k != "config"}))
    return 0
