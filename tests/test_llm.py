"""LLM finding-sentence extraction: reply validation, config, and the Ray Data job with retries.

The reply and config tests use only the Ray-free ``radzero.data.llm_extraction``; the tests of
``radzero.platform.llm`` import it (and so Ray) inside the test. The Ray Data tests talk to
``tests/llm_stub.py``, a real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions
format (the only stand-in in the project: no LLM can run here).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from radzero.config import from_dict
from radzero.data.llm_extraction import (
    SYSTEM_PROMPT,
    LLMConfig,
    build_messages,
    parse_sentences,
    reply_text,
)
from tests.llm_stub import StubLLM, expected_sentences

URL = "http://127.0.0.1:1/v1/chat/completions"


def test_extraction_module_does_not_import_ray() -> None:
    code = "\n".join(
        [
            "import sys",
            "from radzero.data.llm_extraction import LLMConfig, build_messages, parse_sentences",
            f"LLMConfig.from_dict({{'url': {URL!r}, 'model': 'm'}})",
            "build_messages('FINDINGS: No edema.')",
            "assert parse_sentences('[\"There is no edema.\"]') == ['There is no edema.']",
            "print(sorted(name for name in sys.modules if name.split('.')[0] == 'ray'))",
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"


def test_platform_module_re_exports_the_extraction_names() -> None:
    from radzero.data import llm_extraction
    from radzero.platform import llm

    for name in ("LLMConfig", "SYSTEM_PROMPT", "build_messages", "parse_sentences"):
        assert getattr(llm, name) is getattr(llm_extraction, name)


# --- parse_sentences --------------------------------------------------------------------------


def test_parse_accepts_object_and_bare_list() -> None:
    sentences = [
        "There is small pleural effusion of left hemithorax.",
        "There may be atelectasis of right lung base.",
        "There is no pneumothorax.",
        "There is a 1.5 cm nodule of right upper lobe.",
    ]
    assert parse_sentences(json.dumps({"sentences": sentences})) == sentences
    assert parse_sentences(json.dumps(sentences)) == sentences
    assert parse_sentences("[]") == []


def test_parse_tolerates_fence_and_whitespace_and_strips() -> None:
    text = '\n  ```json\n{"sentences": ["  There is cardiomegaly.  "]}\n```  \n'
    assert parse_sentences(text) == ["There is cardiomegaly."]
    assert parse_sentences('```\n["There is no edema."]\n```') == ["There is no edema."]


def test_parse_removes_duplicates_in_order() -> None:
    text = json.dumps(["There is no edema.", "There is effusion.", " There is no edema."])
    assert parse_sentences(text) == ["There is no edema.", "There is effusion."]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("['There is effusion.']", "not valid JSON"),  # Python literal, single quotes
        ("Sure! Here they are: There is effusion.", "not valid JSON"),
        ('["The heart is enlarged."]', "templates"),
        ('["There is effusion. There is edema."]', "templates"),  # two sentences in one
        ('["There may be no effusion."]', "templates"),
        ('["There is effusion"]', "templates"),  # no full stop
        ('["there is effusion."]', "templates"),
        ('["There is no."]', "templates"),
        ('["There is effusion of ."]', "templates"),
        ('["There is effusion.", 3]', "must be a string"),
        ('{"sentences": "There is effusion."}', "must be a JSON list"),
        ('{"findings": ["There is effusion."]}', 'exactly the key "sentences"'),
        ('{"sentences": [], "note": "none"}', 'exactly the key "sentences"'),
        ('"There is effusion."', "must be a JSON list"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_parse_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_sentences(text)


def test_parse_never_evaluates(tmp_path: Path) -> None:
    canary = tmp_path / "evaluated"
    payload = f"__import__('os').system('touch {canary}')"
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_sentences(payload)
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_sentences(f"[{payload}]")
    assert not canary.exists()


def test_reply_text_reads_the_first_choice() -> None:
    response = {
        "choices": [
            {"message": {"role": "assistant", "content": '["There is no edema."]'}},
            {"message": {"role": "assistant", "content": "ignored"}},
        ]
    }
    assert parse_sentences(reply_text(response)) == ["There is no edema."]


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ({"error": {"status": 500, "message": "HTTP 500: boom"}}, "request failed: .*HTTP 500"),
        ({"object": "chat.completion"}, r"no choices\[0\]\.message\.content .*KeyError"),
        ({"choices": []}, r"no choices\[0\].*IndexError"),
        ({"choices": [None]}, r"no choices\[0\].*TypeError"),
        ({"choices": [{"message": {"content": None}}]}, "content is not a string"),
    ],
)
def test_reply_text_rejects_with_reason(response: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        reply_text(response)


# --- LLMConfig and the processor configs -------------------------------------------------------


def test_from_dict_rejects_unknown_keys_naming_them() -> None:
    with pytest.raises(
        ValueError, match=r"key\(s\) llm\.max_retries, llm\.modle.*did you mean 'model'"
    ):
        LLMConfig.from_dict({"url": "http://h/v1", "modle": "m", "max_retries": 3})
    config = LLMConfig.from_dict({"url": "http://h/v1", "model": "m", "qps": 4})
    assert (config.model, config.qps) == ("m", 4)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": None}, "needs url"),
        ({"url": "127.0.0.1:8000/v1/chat/completions"}, "needs url"),
        ({"model": ""}, "needs model"),
        ({"model": "  "}, "needs model"),
        ({"max_attempts": 0}, r"max_attempts must be >= 1, got 0"),
        ({"batch_size": 0}, r"batch_size must be >= 1, got 0"),
        ({"tensor_parallel_size": 0}, r"tensor_parallel_size must be >= 1"),
        ({"qps": 0}, r"qps must be >= 1 or None, got 0"),
        ({"temperature": 3.0}, r"temperature must be in \[0, 2\], got 3.0"),
        ({"temperature": -0.1}, r"temperature must be in \[0, 2\]"),
        ({"timeout_s": 0}, r"timeout_s must be > 0"),
        ({"api_key_env": ""}, "api_key_env must be a non-empty"),
        ({"engine": "vllm", "url": None, "model": None}, "needs model_source"),
        (
            {"engine": "vllm", "model_source": "m", "engine_kwargs": {"tensor_parallel_size": 2}},
            "set tensor_parallel_size on LLMConfig",
        ),
    ],
)
def test_config_validation(fields: dict, message: str) -> None:
    base = {"url": URL, "model": "m"}
    with pytest.raises(ValueError, match=message):
        LLMConfig(**{**base, **fields})
    with pytest.raises(ValueError, match=message):  # the same check when read from a mapping
        LLMConfig.from_dict({**base, **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"engine": "openai"}, r"config llm\.engine must be one of \('http', 'vllm'\)"),
        ({"fallback": "skip"}, r"config llm\.fallback must be one of \('rules', 'error'\)"),
        # The type checks below come from radzero.config.from_dict reading the type hints.
        ({"batch_size": True}, r"config llm\.batch_size must be an integer, got True"),
        ({"max_attempts": "5"}, r"config llm\.max_attempts must be an integer, got '5'"),
        ({"qps": 2.5}, r"config llm\.qps must be an integer.*, got 2\.5"),
        ({"temperature": "0.2"}, r"config llm\.temperature must be a number, got '0\.2'"),
        ({"timeout_s": None}, r"config llm\.timeout_s must be a number, got None"),
        ({"url": 8000}, r"config llm\.url must be a string.*, got 8000"),
        ({"engine_kwargs": ["max_model_len"]}, r"config llm\.engine_kwargs must be a mapping"),
        ({"api_key_env": False}, r"config llm\.api_key_env must be a string.*, got False"),
    ],
)
def test_from_dict_rejects_bad_values_naming_the_key(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_dict(LLMConfig, {"url": URL, "model": "m", **fields}, "llm.")


def test_from_dict_accepts_an_integer_temperature_and_timeout() -> None:
    config = LLMConfig.from_dict({"url": URL, "model": "m", "temperature": 1, "timeout_s": 30})
    assert (config.temperature, config.timeout_s) == (1.0, 30.0)


def test_http_processor_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.data.llm import HttpRequestProcessorConfig

    from radzero.platform.llm import build_processor_config

    url = URL
    config = LLMConfig(url=url, model="m", qps=3, concurrency=2, batch_size=7)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    built = build_processor_config(config)
    assert isinstance(built, HttpRequestProcessorConfig)
    assert (built.url, built.qps, built.concurrency, built.batch_size) == (url, 3, 2, 7)
    assert built.headers is None  # no key in the environment: no Authorization header
    assert built.max_retries == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    assert build_processor_config(config).headers == {"Authorization": "Bearer sk-local"}


def test_vllm_processor_config_builds_without_vllm() -> None:
    from ray.data.llm import vLLMEngineProcessorConfig

    from radzero.platform.llm import build_processor_config

    config = LLMConfig(
        engine="vllm",
        model_source="meta-llama/Llama-3.3-70B-Instruct",
        engine_kwargs={"max_model_len": 8192},
        tensor_parallel_size=4,
        accelerator_type="H100",
        concurrency=2,
        batch_size=32,
    )
    built = build_processor_config(config)
    assert isinstance(built, vLLMEngineProcessorConfig)
    assert built.model_source == "meta-llama/Llama-3.3-70B-Instruct"
    assert built.engine_kwargs["tensor_parallel_size"] == 4
    assert built.engine_kwargs["max_model_len"] == 8192
    assert (built.accelerator_type, built.concurrency, built.batch_size) == ("H100", 2, 32)
    assert built.should_continue_on_error is True
    assert config.engine_kwargs == {"max_model_len": 8192}  # the caller's dict is not touched


def test_prompt_states_the_rules() -> None:
    for template in (
        "There is {finding} of {location}.",
        "There may be {finding} of {location}.",
        "There is no {finding} of {location}.",
    ):
        assert template in SYSTEM_PROMPT
    for word in ("FINDINGS", "IMPRESSION", "unchanged", "improved", '{"sentences"'):
        assert word in SYSTEM_PROMPT
    messages = build_messages("FINDINGS: No edema.")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "FINDINGS: No edema." in messages[1]["content"]


# --- the Ray Data job against the stub server ------------------------------------------------


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubLLM]:
    server = StubLLM(tmp_path_factory.mktemp("stub") / "canary").start()
    try:
        yield server
    finally:
        server.stop()


def _rows(reports: list[str]) -> list[dict]:
    return [{"study_id": 100 + i, "report": r, "site": f"s{i}"} for i, r in enumerate(reports)]


def _by_id(ds) -> dict[int, dict]:
    return {row["study_id"]: row for row in ds.take_all()}


def test_valid_retried_and_http_error_rows(
    ray_local: None, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    from radzero.platform.llm import extract_sentences

    stub.reset()
    monkeypatch.setenv("RADZERO_TEST_LLM_KEY", "sk-test")
    reports = [
        "#ok Small left pleural effusion. No pneumothorax. Possible basal atelectasis. "
        "No pneumothorax.",
        "#invalid-once INVALID_ONCE Cardiomegaly.",
        "#http-500 ERROR_500_ONCE Mild pulmonary edema.",
        "#fenced FENCED Possible right upper lobe nodule.",
        "#empty",
    ]
    rows = _rows(reports)
    config = LLMConfig(
        url=stub.url, model="stub-70b", api_key_env="RADZERO_TEST_LLM_KEY", max_attempts=3
    )
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    out = _by_id(extract_sentences(ds, config))

    assert sorted(out) == [r["study_id"] for r in rows]
    for row in rows:  # other columns pass through unchanged
        assert (out[row["study_id"]]["report"], out[row["study_id"]]["site"]) == (
            row["report"],
            row["site"],
        )
    ok = out[100]
    assert ok["sentences"] == [
        "There is small left pleural effusion.",
        "There is no pneumothorax.",
        "There may be basal atelectasis.",
    ]
    assert (ok["sentence_backend"], ok["llm_attempts"]) == ("llm", 1)
    assert (out[101]["sentences"], out[101]["llm_attempts"]) == (["There is cardiomegaly."], 2)
    assert (out[102]["sentences"], out[102]["llm_attempts"]) == (
        ["There is mild pulmonary edema."],
        2,
    )
    assert out[103]["sentences"] == ["There may be right upper lobe nodule."]
    assert out[103]["llm_attempts"] == 1
    assert (out[104]["sentences"], out[104]["llm_attempts"]) == ([], 1)
    assert {r["sentence_backend"] for r in out.values()} == {"llm"}
    assert dict(stub.counts) == {
        "#ok": 1,
        "#invalid-once": 2,
        "#http-500": 2,
        "#fenced": 1,
        "#empty": 1,
    }
    request = stub.requests[0]
    assert request["authorization"] == "Bearer sk-test"
    assert request["body"]["model"] == "stub-70b"
    assert request["body"]["temperature"] == 0.0
    assert request["body"]["messages"][0]["content"] == SYSTEM_PROMPT

    result = extract_sentences(ray.data.from_items(rows[:2]), config)
    assert str(result.schema().base_schema.field("sentences").type) == "list<item: string>"
    assert _backend_counts(result) == {"rows": 2, "llm": 2, "rules_fallback": 0, "llm_retried": 0}


def _backend_counts(ds) -> dict[str, int]:
    """Rows by the backend that gave their sentences, and LLM rows that needed a retry."""
    rows = ds.select_columns(["sentence_backend", "llm_attempts"]).to_pandas()
    llm = rows["sentence_backend"] == "llm"
    return {
        "rows": len(rows),
        "llm": int(llm.sum()),
        "rules_fallback": int((rows["sentence_backend"] == "rules").sum()),
        "llm_retried": int((llm & (rows["llm_attempts"] > 1)).sum()),
    }


def test_always_invalid_falls_back_to_rules(ray_local: None, stub: StubLLM) -> None:
    import ray

    from radzero.data.sentences import extract_findings
    from radzero.platform.llm import extract_sentences

    stub.reset()
    reports = [
        "#rules-a ALWAYS_INVALID FINDINGS: Right upper lobe opacity. No pleural effusion.",
        "#fine Enlarged cardiac silhouette.",
    ]
    rows = _rows(reports)
    config = LLMConfig(url=stub.url, model="stub-70b", max_attempts=3)
    out = extract_sentences(ray.data.from_items(rows), config)
    got = _by_id(out)

    fallback = got[100]
    assert fallback["sentence_backend"] == "rules"
    assert fallback["llm_attempts"] == 3
    assert fallback["sentences"] == extract_findings(reports[0])
    assert (got[101]["sentence_backend"], got[101]["llm_attempts"]) == ("llm", 1)
    assert got[101]["sentences"] == expected_sentences(reports[1])
    assert stub.counts["#rules-a"] == 3
    assert _backend_counts(out) == {"rows": 2, "llm": 1, "rules_fallback": 1, "llm_retried": 0}
    assert not stub.canary.exists()  # the __import__ reply (attempt 2) was never evaluated


def test_fallback_error_names_failed_rows(ray_local: None, stub: StubLLM) -> None:
    import ray

    from radzero.platform.llm import LLMExtractionError, extract_sentences

    stub.reset()
    rows = _rows(
        [
            "#bad-1 ALWAYS_INVALID Opacity.",
            "#good Cardiomegaly.",
            "#bad-2 ALWAYS_INVALID No effusion.",
        ]
    )
    config = LLMConfig(url=stub.url, model="stub-70b", max_attempts=2, fallback="error")
    with pytest.raises(LLMExtractionError, match=r"2 row\(s\) .* after 2 attempt\(s\)"):
        extract_sentences(ray.data.from_items(rows), config)
    assert dict(stub.counts) == {"#bad-1": 2, "#good": 1, "#bad-2": 2}
    assert not stub.canary.exists()  # attempt 2 was the __import__ payload


def test_connection_errors_are_failed_attempts(ray_local: None) -> None:
    import ray

    from radzero.platform.llm import LLMExtractionError, extract_sentences

    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = LLMConfig(
        url=f"http://127.0.0.1:{port}/v1/chat/completions",
        model="m",
        max_attempts=2,
        fallback="error",
        timeout_s=5,
    )
    ds = ray.data.from_items(_rows(["#down No edema."]))
    with pytest.raises(LLMExtractionError, match=r"1 row\(s\).*2 attempt\(s\).*Connect"):
        extract_sentences(ds, config)
