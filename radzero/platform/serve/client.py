"""A small client of the served API (docs/serving.md), as a script or a notebook would call it:
an image file in a JSON body, the answer as a dict."""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class ServiceError(RuntimeError):
    """The service refused a request: its status and its ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


def ask(
    url: str, route: str, image: Path, key: str | None = None, timeout_s: float = 60, **fields: Any
) -> dict[str, Any]:
    """POST ``image`` and ``fields`` to ``url`` + ``route`` (``/v1/classify``, ``/v1/ground``,
    ``/v1/segment``) and return the JSON answer; a refusal raises :class:`ServiceError`."""
    body = {"image": base64.b64encode(image.read_bytes()).decode(), "name": image.name, **fields}
    request = urllib.request.Request(
        url.rstrip("/") + route,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **_auth(key)},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")
        with contextlib.suppress(json.JSONDecodeError, AttributeError):
            detail = json.loads(detail).get("detail", detail)
        raise ServiceError(err.code, str(detail)) from None


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}
