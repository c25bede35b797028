"""Apply the project's edits to the output of `serve build radzero.platform.serve:app`.

python deploy/edit_serve_yaml.py deploy/serve.yaml   (make serve-yaml runs both steps)

Only what Ray's defaults get wrong for us: the application's name (app1), the proxy's host
(0.0.0.0: this file runs on a workstation; the RayService copy listens on all interfaces)
and the request timeout (none). tests/test_serve_config.py checks nothing else differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = """\
# This file was generated using the `serve build` command on Ray v{version}:
#   serve build radzero.platform.serve:app -o deploy/serve.yaml
# then edited where marked (deploy/edit_serve_yaml.py; make serve-yaml does both).
# Its user_configs are ServeJobConfig's defaults (docs/serving.md); registry null means
# $RADZERO_REGISTRY. Here: RADZERO_REGISTRY=$PWD/runs/local/registry serve run deploy/serve.yaml
"""
EDITS = (
    (
        "http_options:\n  host: 0.0.0.0\n  port: 8000\n",
        "http_options:\n  host: 127.0.0.1  # edited: loopback (RayService: 0.0.0.0)\n  port: 8000\n"
        "  request_timeout_s: 60.0  # edited: Ray's default is no timeout\n",
    ),
    ("- name: app1\n", "- name: radzero  # edited: serve build names it app1\n"),
)


def main(path: str) -> None:
    text = Path(path).read_text()
    first, _, rest = text.partition("\n")
    version = first.rsplit(" v", 1)[-1].rstrip(".")
    for before, after in EDITS:
        if before not in rest:
            raise SystemExit(f"{path}: serve build no longer writes {before!r}; update the edits")
        rest = rest.replace(before, after, 1)
    Path(path).write_text(HEADER.format(version=version) + rest)


if __name__ == "__main__":
    main(sys.argv[1])
