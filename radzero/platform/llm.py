"""Finding-sentence extraction with an LLM, run as a Ray Data job through ``ray.data.llm``.

An instruction-tuned LLM reads the FINDINGS and IMPRESSION sections of each report and returns
finding sentences in three fixed templates. Replies are parsed with ``json.loads`` and checked
against the templates (never evaluated). A row whose reply fails the check, or whose request
fails (HTTP error status, connection error, timeout, engine error), is sent again, up to
``max_attempts`` attempts in all; rows that never succeed fall back to the rules backend
(``radzero.data.sentences.extract_findings``) or raise, as configured.

Retries are whole passes of the ``ray.data.llm`` processor over the rows still failing: the
processor's stages run as Ray Data operators, so a retry cannot be issued from inside
``postprocess``; each pass is materialised once so that no request is sent twice by accident.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray.data

from radzero.config import from_dict

ENGINES = ("http", "vllm")
FALLBACKS = ("rules", "error")

# Prefix of the working columns this module adds while it runs; input columns must not use it.
_PREFIX = "__radzero_"
_COLUMNS = _PREFIX + "columns"
_SENTENCES = _PREFIX + "sentences"
_ERROR = _PREFIX + "error"

# Keys the processor stages read or write inside a row; an input column of that name would be
# overwritten on the way through.
_ENGINE_KEYS = {
    "http": frozenset({"payload", "http_response"}),
    "vllm": frozenset(
        {
            "messages",
            "sampling_params",
            "prompt",
            "tokenized_prompt",
            "generated_text",
            "generated_tokens",
            "num_generated_tokens",
            "num_input_tokens",
            "request_id",
            "__inference_error__",
        }
    ),
}

SYSTEM_PROMPT = """\
You turn chest X-ray reports into short finding sentences for an image-text model.

Rules:
1. Use only the FINDINGS and IMPRESSION sections. Ignore history, indication, technique and
   comparison sections.
2. Break the text into the smallest units that each state a single clinical finding.
3. Write every unit with exactly one of these three templates:
   "There is {finding} of {location}."
   "There may be {finding} of {location}."
   "There is no {finding} of {location}."
   Leave out " of {location}" when the report gives no location.
4. Use "There is no" for findings the report rules out, and "There may be" for findings it
   calls possible, probable, suspected or not excluded.
5. Each sentence must describe the current image on its own: drop every word that compares
   with an earlier study, such as new, newly, improved, unchanged, worsened, stable,
   increased, decreased, resolving, persistent, again seen, consistent with prior.
6. Keep the location whenever the report states one.
7. Answer with ONLY a JSON object of the form {"sentences": ["...", "..."]} and nothing else:
   no explanation, no markdown.

Example report:
FINDINGS: Slightly improved small right pleural effusion. Heart size is stable. No
pneumothorax. IMPRESSION: New opacity at the left base, possibly atelectasis.
Example answer:
{"sentences": ["There is small pleural effusion of right hemithorax.", \
"There is normal heart size.", "There is no pneumothorax.", \
"There is opacity of left lung base.", "There may be atelectasis of left lung base."]}"""

# A finding or location: anything but a full stop, except a decimal point such as "1.5 cm".
_PHRASE = r"(?:[^.\n]|(?<=\d)\.(?=\d))+?"
_TEMPLATE = re.compile(
    rf"There (?:is no|may be|is) (?!no\b)(?=\S){_PHRASE}(?: of (?=\S){_PHRASE})?(?<=\S)\.",
)
_FENCE = re.compile(r"^```(?:json|JSON)?[ \t]*\n?(?P<body>.*?)\n?[ \t]*```$", re.DOTALL)


class LLMExtractionError(RuntimeError):
    """Rows still without valid sentences after every attempt while ``fallback="error"``."""


@dataclass
class LLMConfig:
    """How to reach the LLM and what to do when it fails.

    ``engine="http"`` posts to any OpenAI-compatible chat-completions ``url`` (with ``model``);
    ``engine="vllm"`` runs ``model_source`` in vLLM on the cluster's GPUs (one engine replica
    per ``concurrency``, ``tensor_parallel_size`` GPUs each).
    """

    engine: str = "http"
    # http
    url: str | None = None
    model: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    qps: int | None = None
    timeout_s: float = 120.0
    # vllm
    model_source: str | None = None
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    tensor_parallel_size: int = 1
    accelerator_type: str | None = None
    # common
    concurrency: int = 1
    batch_size: int = 16
    temperature: float = 0.0
    max_tokens: int = 1024
    max_attempts: int = 5
    fallback: str = "rules"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        for name in ("concurrency", "batch_size", "max_tokens", "max_attempts"):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("tensor_parallel_size", self.tensor_parallel_size, minimum=1)
        if self.qps is not None:
            _require_int("qps", self.qps, minimum=1)
        if not _is_number(self.temperature) or not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be a number in [0, 2], got {self.temperature!r}")
        if not _is_number(self.timeout_s) or self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be a positive number, got {self.timeout_s!r}")
        if not isinstance(self.engine_kwargs, dict):
            raise ValueError(f"engine_kwargs must be a dict, got {type(self.engine_kwargs)}")
        if self.api_key_env is not None and not _is_text(self.api_key_env):
            raise ValueError("api_key_env must be a non-empty environment variable name or None")
        if self.engine == "http":
            if not _is_text(self.url) or not self.url.startswith(("http://", "https://")):
                raise ValueError(
                    "engine 'http' needs url, the full chat-completions URL "
                    f"(http:// or https://), got {self.url!r}"
                )
            if not _is_text(self.model):
                raise ValueError("engine 'http' needs model, the model name the server expects")
        else:
            if not _is_text(self.model_source):
                raise ValueError("engine 'vllm' needs model_source (a hub id or a local path)")
            if "tensor_parallel_size" in self.engine_kwargs:
                raise ValueError("set tensor_parallel_size on LLMConfig, not in engine_kwargs")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LLMConfig:
        """Build from a mapping (e.g. a YAML section); unknown keys are an error."""
        return from_dict(cls, data, "llm.")


def build_messages(report: str) -> list[dict[str, str]]:
    """The chat messages sent for one report."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Report:\n{report}"},
    ]


def parse_sentences(text: str) -> list[str]:
    """Validate one LLM reply and return its sentences (stripped, duplicates removed in order).

    Accepts ``{"sentences": [...]}`` or a bare JSON list, optionally in a ```json fenced block.
    Raises ValueError naming the reason otherwise. The reply is only ever parsed as JSON.
    """
    if not isinstance(text, str):
        raise ValueError(f"reply must be a string, got {type(text).__name__}")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group("body").strip()
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"reply is not valid JSON: {err}; reply starts {body[:80]!r}") from None
    if isinstance(value, dict):
        if set(value) != {"sentences"}:
            raise ValueError(
                f'JSON object must have exactly the key "sentences", got {sorted(value)}'
            )
        value = value["sentences"]
    if not isinstance(value, list):
        raise ValueError(f"sentences must be a JSON list, got {type(value).__name__}")
    sentences: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"every sentence must be a string, got {item!r}")
        sentence = item.strip()
        if not _TEMPLATE.fullmatch(sentence):
            raise ValueError(f"sentence does not follow the templates: {sentence!r}")
        if sentence not in sentences:
            sentences.append(sentence)
    return sentences


def build_processor_config(config: LLMConfig) -> Any:
    """The ``ray.data.llm`` processor config for ``config`` (HTTP or vLLM engine)."""
    from ray.data.llm import HttpRequestProcessorConfig, vLLMEngineProcessorConfig

    if config.engine == "http":
        headers = {}
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return HttpRequestProcessorConfig(
            url=config.url,
            headers=headers or None,
            qps=config.qps,
            concurrency=config.concurrency,
            batch_size=config.batch_size,
            # Our session never hands back a failure, so the stage's own retry loop (which
            # fails the whole job once exhausted) stays unused: failures become attempts.
            max_retries=0,
            session_factory=functools.partial(_ResilientSession, config.timeout_s),
        )
    engine_kwargs = dict(config.engine_kwargs, tensor_parallel_size=config.tensor_parallel_size)
    return vLLMEngineProcessorConfig(
        model_source=config.model_source,
        engine_kwargs=engine_kwargs,
        accelerator_type=config.accelerator_type,
        concurrency=config.concurrency,
        batch_size=config.batch_size,
        # An engine error for a row becomes a failed attempt instead of failing the job.
        should_continue_on_error=True,
    )


def extract_sentences(
    ds: ray.data.Dataset, config: LLMConfig, *, column: str = "report"
) -> ray.data.Dataset:
    """Add ``sentences``, ``sentence_backend`` ("llm" or "rules") and ``llm_attempts`` columns.

    Other columns pass through unchanged; row order is not preserved. With
    ``fallback="error"``, raises LLMExtractionError when rows fail every attempt.
    """
    from ray.data.expressions import col
    from ray.data.llm import build_processor

    processor = build_processor(
        build_processor_config(config),
        preprocess=functools.partial(_preprocess, config=config, column=column),
        postprocess=functools.partial(_postprocess, engine=config.engine),
    )
    done: list[ray.data.Dataset] = []
    pending = ds
    attempt = 0
    while attempt < config.max_attempts:
        attempt += 1
        # Materialise so every request of this pass is sent exactly once.
        out = processor(pending).map(_settle).materialize()
        succeeded = out.filter(expr=col(_ERROR) == "")
        done.append(succeeded.map(_finish, fn_kwargs={"attempts": attempt}))
        pending = out.filter(expr=col(_ERROR) != "").materialize()
        if pending.count() == 0:
            break
    failed = pending.count()
    if failed:
        if config.fallback == "error":
            reason = pending.take(1)[0][_ERROR]
            raise LLMExtractionError(
                f"{failed} row(s) had no valid LLM sentences after {attempt} attempt(s); "
                f"last reason for one of them: {reason}"
            )
        # Fail here, not later when the result is consumed, if the rules backend is missing.
        from radzero.data.sentences import extract_findings  # noqa: F401

        done.append(pending.map(_fallback, fn_kwargs={"column": column, "attempts": attempt}))
    return done[0].union(*done[1:]) if len(done) > 1 else done[0]


def summarise(ds: ray.data.Dataset) -> dict[str, int]:
    """Counts over an ``extract_sentences`` result: rows, llm, rules_fallback, llm_retried."""
    counts = {"rows": 0, "llm": 0, "rules_fallback": 0, "llm_retried": 0}
    columns = ["sentence_backend", "llm_attempts"]
    for batch in ds.select_columns(columns).iter_batches(batch_format="numpy"):
        backend, attempts = batch["sentence_backend"], batch["llm_attempts"]
        counts["rows"] += len(backend)
        llm = backend == "llm"
        counts["llm"] += int(llm.sum())
        counts["rules_fallback"] += int((backend == "rules").sum())
        counts["llm_retried"] += int((llm & (attempts > 1)).sum())
    return counts


# --- row functions run by Ray Data workers -----------------------------------------------------


def _preprocess(row: dict[str, Any], *, config: LLMConfig, column: str) -> dict[str, Any]:
    columns = [k for k in row if not k.startswith(_PREFIX)]
    clash = _ENGINE_KEYS[config.engine].intersection(columns)
    if clash:
        raise ValueError(f"input columns {sorted(clash)} clash with ray.data.llm's own keys")
    if column not in row:
        raise ValueError(f"report column {column!r} not found; columns: {columns}")
    report = row[column] if isinstance(row[column], str) else ""
    messages = build_messages(report)
    if config.engine == "http":
        request = {
            "payload": {
                "model": config.model,
                "messages": messages,
                "temperature": config.temperature,
                "max_tokens": config.max_tokens,
            }
        }
    else:
        request = {
            "messages": messages,
            "sampling_params": {
                "temperature": config.temperature,
                "max_tokens": config.max_tokens,
            },
        }
    return {**request, _COLUMNS: columns}


def _postprocess(row: dict[str, Any], *, engine: str) -> dict[str, Any]:
    sentences: list[str] = []
    try:
        text = _reply_text(row["http_response"]) if engine == "http" else row["generated_text"]
        sentences = parse_sentences(text)
        error = ""
    except ValueError as err:
        error = str(err)
    return {**_original(row), _COLUMNS: row[_COLUMNS], _SENTENCES: sentences, _ERROR: error}


def _reply_text(response: Mapping[str, Any]) -> str:
    """``choices[0].message.content`` of an OpenAI chat-completions response."""
    if response.get("error"):
        raise ValueError(f"request failed: {response['error']}")
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"response has no choices[0].message.content ({err!r})") from None
    if not isinstance(content, str):
        raise ValueError("choices[0].message.content is not a string")
    return content


def _settle(row: dict[str, Any]) -> dict[str, Any]:
    """Keep the input columns and the outcome; rows that skipped postprocess (vLLM engine
    errors under ``should_continue_on_error``) become failed attempts."""
    error = row.get(_ERROR)
    if error is None:
        error = f"engine error: {row.get('__inference_error__') or 'unknown'}"
        sentences = []
    else:
        sentences = list(row[_SENTENCES])
    return {**_original(row), _SENTENCES: sentences, _ERROR: error}


def _original(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in row[_COLUMNS]}


def _finish(row: dict[str, Any], *, attempts: int) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if not k.startswith(_PREFIX)}
    out.update(sentences=list(row[_SENTENCES]), sentence_backend="llm", llm_attempts=attempts)
    return out


def _fallback(row: dict[str, Any], *, column: str, attempts: int) -> dict[str, Any]:
    from radzero.data.sentences import extract_findings

    out = {k: v for k, v in row.items() if not k.startswith(_PREFIX)}
    report = row[column] if isinstance(row[column], str) else ""
    out.update(
        sentences=list(extract_findings(report)), sentence_backend="rules", llm_attempts=attempts
    )
    return out


# --- HTTP session for ray.data.llm's HttpRequestStage -------------------------------------------


class _Reply:
    """A fully read response as HttpRequestStage consumes it: status, reason, json()."""

    status = 200
    reason = "OK"

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    async def json(self) -> dict[str, Any]:
        return self._body

    async def __aenter__(self) -> _Reply:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _ResilientSession:
    """Session factory for HttpRequestProcessorConfig: failures come back as error bodies.

    The stage awaits ``session.post(...)`` and reads ``status`` and ``json()``; it fails the
    whole job on a connection error, a non-JSON body or (after its retries) a 429/5xx. Here
    each of those becomes ``{"error": ...}`` for that row, which the retry loop then counts as
    one failed attempt.
    """

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._session: Any = None

    async def __aenter__(self) -> _ResilientSession:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    def post(self, url: str, **kwargs: Any) -> Any:
        return self._post(url, **kwargs)

    async def _post(self, url: str, **kwargs: Any) -> _Reply:
        import aiohttp

        try:
            async with self._session.post(url, **kwargs) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            return _Reply({"error": {"message": f"{type(err).__name__}: {err}"}})
        if status >= 400:
            text = raw[:300].decode("utf-8", errors="replace")
            return _Reply({"error": {"status": status, "message": f"HTTP {status}: {text}"}})
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return _Reply({"error": {"status": status, "message": "response body is not JSON"}})
        if not isinstance(body, dict) or not body:
            return _Reply({"error": {"status": status, "message": "response is not a JSON object"}})
        return _Reply(body)


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""
