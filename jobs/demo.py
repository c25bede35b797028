"""The demo job: phantoms -> preprocess -> features -> Ray Train -> zero-shot evaluation.

python jobs/demo.py --out runs/demo [--count 1500] [--epochs 15] [--model radzero-tiny-local]
"""

from __future__ import annotations

import argparse
import json

from radzero.platform.demo import demo_config, run_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--count", type=int, help="phantom images to generate")
    parser.add_argument("--epochs", type=int, help="training epochs")
    parser.add_argument("--model", help="architecture config name (radzero/model/configs)")
    parser.add_argument("--overrides", help="JSON object of demo config overrides")
    args = parser.parse_args(argv)
    try:
        overrides = json.loads(args.overrides) if args.overrides else {}
    except json.JSONDecodeError as err:
        parser.error(f"--overrides is not valid JSON: {err}")
    for key in ("count", "model"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.epochs is not None:
        overrides.setdefault("train", {})["epochs"] = args.epochs
    try:
        config = demo_config(overrides)
    except ValueError as err:
        parser.error(str(err))
    metrics = run_demo(args.out, config)
    print(json.dumps({k: metrics[k] for k in ("auc_macro", "pointing_game", "dice")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
