"""A small OpenAI-compatible chat-completions server for tests (an LLM cannot run here).

``POST /v1/chat/completions`` answers in the OpenAI response shape. What it answers is chosen
by markers in the report text (the last user message):

- a case tag ``#name`` identifies the report; requests are counted per tag;
- ``INVALID_ONCE``: the first request gets prose instead of JSON, later ones a valid reply;
- ``ERROR_500_ONCE``: the first request gets HTTP 500 with a plain-text body;
- ``ALWAYS_INVALID``: every request gets an invalid reply (cycling through several kinds,
  one of them a Python expression that would create ``canary`` if anything evaluated it);
- ``FENCED``: the valid reply comes inside a ```json fenced block;
- otherwise the valid reply has one sentence per clause of the report: "No X" becomes
  "There is no x.", "Possible X" becomes "There may be x.", anything else "There is x.".
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MARKERS = ("INVALID_ONCE", "ERROR_500_ONCE", "ALWAYS_INVALID", "FENCED")


def expected_sentences(report: str) -> list[str]:
    """The sentences a valid reply carries for ``report`` (before duplicate removal)."""
    text = re.sub(r"#\S+", " ", report)
    for marker in MARKERS:
        text = text.replace(marker, " ")
    out = []
    for clause in text.split("."):
        clause = " ".join(clause.split()).lower()
        if not clause:
            continue
        if clause.startswith("no "):
            out.append(f"There is no {clause[3:]}.")
        elif clause.startswith("possible "):
            out.append(f"There may be {clause[9:]}.")
        else:
            out.append(f"There is {clause}.")
    return out


class StubLLM:
    """The server, run in a daemon thread on 127.0.0.1 with an OS-chosen port."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary
        self.counts: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                stub._handle(self)

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1/chat/completions"

    def start(self) -> StubLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.requests.clear()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.path != "/v1/chat/completions":
            self._send(handler, 404, b'{"error": "not found"}')
            return
        length = int(handler.headers.get("Content-Length", "0"))
        request = json.loads(handler.rfile.read(length))
        report = re.sub(r"^Report:\s*", "", request["messages"][-1]["content"])
        tag = re.search(r"#\S+", report)
        case = tag.group(0) if tag else report
        with self._lock:
            self.counts[case] += 1
            n = self.counts[case]
            self.requests.append(
                {
                    "case": case,
                    "body": request,
                    "authorization": handler.headers.get("Authorization"),
                }
            )
        if "ERROR_500_ONCE" in report and n == 1:
            self._send(handler, 500, b"internal server error", "text/plain")
            return
        if "ALWAYS_INVALID" in report:
            content = self._invalid(n)
        elif "INVALID_ONCE" in report and n == 1:
            content = "Sure! Here are the sentences: There is cardiomegaly."
        else:
            content = json.dumps({"sentences": expected_sentences(report)})
            if "FENCED" in report:
                content = f"```json\n{content}\n```"
        reply = {
            "id": f"chatcmpl-stub-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": request.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        self._send(handler, 200, json.dumps(reply).encode())

    def _invalid(self, n: int) -> str:
        kinds = [
            "['There is effusion.']",  # a Python literal, not JSON
            f"__import__('pathlib').Path({str(self.canary)!r}).touch()",
            json.dumps({"sentences": ["The heart is enlarged."]}),  # not a template
            json.dumps({"sentences": "There is effusion."}),  # not a list
        ]
        return kinds[(n - 1) % len(kinds)]

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str = "application/json",
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
