"""Finding-sentence extraction with an LLM, run as a Ray Data job through ``ray.data.llm``.

The settings, the prompt and the reply checks are Ray-free, in ``radzero.data.llm_extraction``
(re-exported here). This module builds the ``ray.data.llm`` processor (HTTP or vLLM engine) and
runs it: a row whose reply fails the check, or whose request fails (HTTP error status,
connection error, timeout, engine error), is sent again, up to ``max_attempts`` attempts in all;
rows that never succeed fall back to the rules backend
(``radzero.data.sentences.extract_findings``) or raise, as configured.

Retries are whole passes of the ``ray.data.llm`` processor over the rows still failing: the
processor's stages run as Ray Data operators, so a retry cannot be issued from inside
``postprocess``; each pass is materialised once so that no request is sent twice by accident.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from typing import Any

import ray.data

from radzero.data.llm_extraction import (
    SYSTEM_PROMPT,
    LLMConfig,
    build_messages,
    parse_sentences,
    reply_text,
)
from radzero.data.sentences import extract_findings

__all__ = [
    "SYSTEM_PROMPT",
    "LLMConfig",
    "LLMExtractionError",
    "build_messages",
    "build_processor_config",
    "extract_sentences",
    "parse_sentences",
]

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


class LLMExtractionError(RuntimeError):
    """Rows still without valid sentences after every attempt while ``fallback="error"``."""


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
    for attempt in range(1, config.max_attempts + 1):  # LLMConfig keeps max_attempts >= 1
        # Materialise so every request of this pass is sent exactly once.
        out = processor(pending).map(_settle).materialize()
        succeeded = out.filter(expr=col(_ERROR) == "")
        done.append(succeeded.map(_finish, fn_kwargs={"attempts": attempt}))
        pending = out.filter(expr=col(_ERROR) != "").materialize()
        failed = pending.count()
        if failed == 0:
            break
    if failed:
        if config.fallback == "error":
            reason = pending.take(1)[0][_ERROR]
            raise LLMExtractionError(
                f"{failed} row(s) had no valid LLM sentences after {attempt} attempt(s); "
                f"last reason for one of them: {reason}"
            )
        done.append(pending.map(_fallback, fn_kwargs={"column": column, "attempts": attempt}))
    return done[0].union(*done[1:]) if len(done) > 1 else done[0]


# --- row functions run by Ray Data workers -----------------------------------------------------


def _preprocess(row: dict[str, Any], *, config: LLMConfig, column: str) -> dict[str, Any]:
    columns = [k for k in row if not k.startswith(_PREFIX)]
    clash = _ENGINE_KEYS[config.engine].intersection(columns)
    if clash:
        raise ValueError(f"input columns {sorted(clash)} clash with ray.data.llm's own keys")
    if column not in row:
        raise ValueError(f"report column {column!r} not found; columns: {columns}")
    messages = build_messages(_report(row, column))
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
        text = reply_text(row["http_response"]) if engine == "http" else row["generated_text"]
        sentences = parse_sentences(text)
        error = ""
    except ValueError as err:
        error = str(err)
    return {**_original(row), _COLUMNS: row[_COLUMNS], _SENTENCES: sentences, _ERROR: error}


def _settle(row: dict[str, Any]) -> dict[str, Any]:
    """Keep the input columns and the outcome; rows that skipped postprocess (vLLM engine
    errors under ``should_continue_on_error``, which ray.data.llm passes on only with a
    non-empty ``__inference_error__``) become failed attempts."""
    error = row.get(_ERROR)
    if error is None:
        error = f"engine error: {row['__inference_error__']}"
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
    out = {k: v for k, v in row.items() if not k.startswith(_PREFIX)}
    out.update(
        sentences=extract_findings(_report(row, column)),
        sentence_backend="rules",
        llm_attempts=attempts,
    )
    return out


def _report(row: Mapping[str, Any], column: str) -> str:
    """The report text of a row; a null report reads as empty."""
    return row[column] if isinstance(row[column], str) else ""


# --- HTTP session for ray.data.llm's HttpRequestStage -------------------------------------------


class _Reply:
    """A fully read response as HttpRequestStage consumes it: ``status`` and ``json()``.

    The stage reads ``reason`` only for a retryable status (429, 5xx); a _Reply is always 200.
    """

    status = 200

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

    async def post(self, url: str, **kwargs: Any) -> _Reply:
        import aiohttp

        try:
            async with self._session.post(url, **kwargs) as response:
                status, raw = response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError) as err:
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
