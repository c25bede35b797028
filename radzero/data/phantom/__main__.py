"""``python -m radzero.data.phantom --out DIR --count N [--size S --seed K ...]``."""

from radzero.data.phantom.cli import main

raise SystemExit(main())
