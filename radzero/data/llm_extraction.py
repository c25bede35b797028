"""The Ray-free half of LLM finding-sentence extraction: settings, prompt and reply checks.

An instruction-tuned LLM reads the FINDINGS and IMPRESSION sections of a report and answers
with finding sentences in three fixed templates (docs/data.md, "Finding-sentences"). This module
holds what needs no cluster: :class:`LLMConfig`, the prompt (:data:`SYSTEM_PROMPT`,
:func:`build_messages`) and the checks on a reply (:func:`reply_text`, :func:`parse_sentences`).
Replies are parsed with ``json.loads`` and matched against the templates, never evaluated. The
Ray Data job that sends the requests, retries and falls back to the rules backend is
``radzero.platform.llm``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from radzero.config import from_dict

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

_COUNTS = ("concurrency", "batch_size", "max_tokens", "max_attempts", "tensor_parallel_size")


@dataclass
class LLMConfig:
    """How to reach the LLM and what to do when it fails.

    ``engine="http"`` posts to any OpenAI-compatible chat-completions ``url`` (with ``model``);
    ``engine="vllm"`` runs ``model_source`` in vLLM on the cluster's GPUs (one engine replica
    per ``concurrency``, ``tensor_parallel_size`` GPUs each). A row is sent up to
    ``max_attempts`` times; rows that never get valid sentences go to the rules backend
    (``fallback="rules"``) or stop the job (``fallback="error"``).
    """

    engine: Literal["http", "vllm"] = "http"
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
    fallback: Literal["rules", "error"] = "rules"

    def __post_init__(self) -> None:
        for name in _COUNTS:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.qps is not None and self.qps < 1:
            raise ValueError(f"qps must be >= 1 or None, got {self.qps!r}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if self.api_key_env is not None and not self.api_key_env.strip():
            raise ValueError("api_key_env must be a non-empty environment variable name or None")
        if self.engine == "http":
            if not (self.url or "").startswith(("http://", "https://")):
                raise ValueError(
                    "engine 'http' needs url, the full chat-completions URL "
                    f"(http:// or https://), got {self.url!r}"
                )
            if not (self.model or "").strip():
                raise ValueError("engine 'http' needs model, the model name the server expects")
        else:
            if not (self.model_source or "").strip():
                raise ValueError("engine 'vllm' needs model_source (a hub id or a local path)")
            if "tensor_parallel_size" in self.engine_kwargs:
                raise ValueError("set tensor_parallel_size on LLMConfig, not in engine_kwargs")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LLMConfig:
        """Build from a mapping (e.g. a YAML section); unknown keys and wrong types are errors."""
        return from_dict(cls, data, "llm.")


def build_messages(report: str) -> list[dict[str, str]]:
    """The chat messages sent for one report."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Report:\n{report}"},
    ]


def reply_text(response: Mapping[str, Any]) -> str:
    """``choices[0].message.content`` of an OpenAI chat-completions response.

    Raises ValueError for an ``error`` body (the server's, or a failed request's) and for a
    response without a string content.
    """
    if response.get("error"):
        raise ValueError(f"request failed: {response['error']}")
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"response has no choices[0].message.content ({err!r})") from None
    if not isinstance(content, str):
        raise ValueError("choices[0].message.content is not a string")
    return content


def parse_sentences(text: str) -> list[str]:
    """Validate one LLM reply and return its sentences (stripped, duplicates removed in order).

    Accepts ``{"sentences": [...]}`` or a bare JSON list, optionally in a ```json fenced block.
    Raises ValueError naming the reason otherwise. The reply is only ever parsed as JSON.
    """
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
