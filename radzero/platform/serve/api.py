"""The HTTP ingress: FastAPI routes that check a request, hand it to the model deployment and
turn its answer (or its refusal) into a response. Routes and status codes: docs/serving.md."""

import base64
import binascii
import hmac
import os
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.serve.metrics import Counter
from starlette.datastructures import UploadFile

from radzero.config import from_dict
from radzero.data.sentences.vocabulary import FINDINGS_VOCABULARY
from radzero.inference import InputError, Query, Task
from radzero.platform.serve.config import LimitsSection

STATIC = Path(__file__).with_name("static")
# Serve lets a client turn off the server's timeout and cancel-on-disconnect with these
# headers; the ingress refuses them (docs/serving.md).
REFUSED_HEADERS = ("x-request-timeout-seconds", "x-request-disconnect-disabled")
PUBLIC_PATHS = ("/healthz",)


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassifyFields(_Fields):
    findings: list[str] = Field(description="findings to score, e.g. 'pleural effusion'")
    templates: list[str] | None = Field(
        None, description="prompt templates with one {} (default: the model's)"
    )


class GroundFields(_Fields):
    phrases: list[str] = Field(description="free-text phrases to locate")
    overlays: bool = Field(False, description="add a PNG overlay (base64) per phrase")


class SegmentFields(_Fields):
    phrases: list[str] = Field(description="free-text phrases to segment")
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="on the sigmoid map (default: the model card's)"
    )


FIELDS: dict[Task, type[_Fields]] = {
    "classify": ClassifyFields,
    "ground": GroundFields,
    "segment": SegmentFields,
}
TEXTS = {"classify": "findings", "ground": "phrases", "segment": "phrases"}
LIST_FIELDS = ("findings", "templates", "phrases")  # repeated fields of a multipart form


def _request_body(task: Task) -> dict[str, Any]:
    """OpenAPI text of an endpoint's two body forms: JSON with a base64 image, or multipart."""
    fields = FIELDS[task].model_json_schema()
    image = {"image": {"type": "string", "description": "base64 of a PNG, JPEG or DICOM file"}}
    name = {"name": {"type": "string", "description": "the file's name, for messages"}}
    json_schema = {
        **fields,
        "properties": {**image, **name, **fields["properties"]},
        "required": ["image", *fields.get("required", [])],
    }
    upload = {"image": {"type": "string", "format": "binary"}}
    form = {**fields, "properties": {**upload, **fields["properties"]}}
    form["required"] = ["image", *fields.get("required", [])]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": json_schema},
                "multipart/form-data": {"schema": form},
            },
        }
    }


def _validation_detail(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()
    )


api = FastAPI(
    title="RadZero",
    summary="Zero-shot chest X-ray classification, grounding and segmentation",
    description="Routes, limits and status codes: docs/serving.md.",
)
api.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")


@serve.deployment
@serve.ingress(api)
class Ingress:
    """Checks each request (size, image, fields, key), asks the model deployment, answers
    with the model's version and the time spent. A client's mistake is a 4xx, never a 500."""

    def __init__(self, model: DeploymentHandle) -> None:
        self._model = model
        self._limits = LimitsSection()
        self._findings: tuple[str, ...] = FINDINGS_VOCABULARY
        self._strict = False
        self._key: str | None = None
        self._timeout_s = 60.0
        self._requests = Counter(
            "radzero_requests_total",
            description="Requests by endpoint and status code.",
            tag_keys=("endpoint", "status"),
        )
        self._rejected = Counter(
            "radzero_rejected_total",
            description="Refused requests by reason.",
            tag_keys=("reason",),
        )

    def reconfigure(self, config: dict[str, Any]) -> None:
        self._limits = from_dict(LimitsSection, config["limits"], "limits.")
        self._findings = tuple(config.get("findings") or FINDINGS_VOCABULARY)
        self._strict = bool(config.get("strict_findings"))
        self._timeout_s = float(config["request_timeout_s"])
        variable = config.get("api_key_env")
        self._key = None
        if variable:
            self._key = os.environ.get(variable)
            if not self._key:
                raise ValueError(f"api_key_env names {variable}, which is not set or empty")
        # FastAPI builds its body-size middleware on the first request: rebuild with this limit.
        api.max_body_size = self._limits.max_body_bytes
        api.middleware_stack = None

    # -- routes -----------------------------------------------------------------------------
    @api.post("/v1/classify", openapi_extra=_request_body("classify"))
    async def classify(self, request: Request) -> dict[str, Any]:
        """One probability per finding: sigmoid of the prompt's logit (templates averaged)."""
        return await self._answer(request, "classify")

    @api.post("/v1/ground", openapi_extra=_request_body("ground"))
    async def ground(self, request: Request) -> dict[str, Any]:
        """Per phrase: probability, the map's peak in the image's pixels, the map on the patch
        grid, and optionally a PNG overlay."""
        return await self._answer(request, "ground")

    @api.post("/v1/segment", openapi_extra=_request_body("segment"))
    async def segment(self, request: Request) -> dict[str, Any]:
        """Per phrase: the thresholded map in the image's size, as RLE and as a PNG."""
        return await self._answer(request, "segment")

    @api.get("/v1/model")
    async def model_info(self, request: Request) -> dict[str, Any]:
        """The serving model's version, card, templates and resolution; the findings offered,
        the request limits, and the last failed swap (if any)."""
        return await self._guarded(request, "model", self._info)

    @api.get("/healthz")
    async def healthz(self, request: Request) -> dict[str, Any]:
        """Liveness: ok with the serving model's version."""
        return await self._guarded(request, "healthz", self._health)

    @api.get("/", include_in_schema=False)
    async def page(self) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    # -- the work ---------------------------------------------------------------------------
    async def _info(self, request: Request) -> dict[str, Any]:
        info = await self._model.info.remote()
        limits = self._limits
        return {
            **info,
            "findings": list(self._findings),
            "strict_findings": self._strict,
            "limits": {
                "max_body_bytes": limits.max_body_bytes,
                "max_pixels": limits.max_pixels,
                "max_phrases": limits.max_phrases,
                "max_phrase_chars": limits.max_phrase_chars,
            },
            "auth": self._key is not None,
        }

    async def _health(self, request: Request) -> dict[str, Any]:
        info = await self._model.info.remote()
        return {"status": "ok", "model": info["model"]}

    async def _answer(self, request: Request, task: Task) -> dict[str, Any]:
        async def run(request: Request) -> dict[str, Any]:
            answer = await self._model.answer.remote(await self._query(request, task))
            if isinstance(answer, InputError):
                raise self._refuse(answer.status, "image", answer.detail)
            return answer

        return await self._guarded(request, task, run)

    async def _guarded(self, request: Request, endpoint: str, work: Any) -> dict[str, Any]:
        """``work(request)`` after the header and key checks; counts the outcome and adds the
        time spent."""
        started = time.perf_counter()
        status = 200
        try:
            self._check_headers(request)
            result = await work(request)
        except HTTPException as err:
            status = err.status_code
            raise
        finally:
            self._requests.inc(tags={"endpoint": endpoint, "status": str(status)})
        return {**result, "elapsed_ms": round((time.perf_counter() - started) * 1000, 2)}

    def _check_headers(self, request: Request) -> None:
        for header in REFUSED_HEADERS:
            if header in request.headers:
                raise self._refuse(
                    400,
                    "header",
                    f"header {header} is not accepted here: requests time out after "
                    f"{self._timeout_s:g} s on the server",
                )
        if self._key is None or request.url.path.endswith(PUBLIC_PATHS):
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self._key}".encode()):
            raise self._refuse(401, "auth", "send the API key as 'Authorization: Bearer <key>'")

    async def _query(self, request: Request, task: Task) -> Query:
        """The request's image and fields, from multipart form data or a JSON body."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            image, name, values = await self._read_form(request, task)
        elif kind == "application/json":
            image, name, values = await self._read_json(request)
        else:
            raise self._refuse(415, "content_type", "send multipart/form-data or application/json")
        try:
            fields = FIELDS[task].model_validate(values)
        except ValidationError as err:
            raise self._refuse(422, "fields", _validation_detail(err)) from None
        texts = self._texts(task, getattr(fields, TEXTS[task]))
        return Query(
            task=task,
            image=image,
            texts=texts,
            name=name,
            templates=getattr(fields, "templates", None),
            threshold=getattr(fields, "threshold", None),
            overlays=getattr(fields, "overlays", False),
            max_pixels=self._limits.max_pixels,
        )

    async def _read_form(self, request: Request, task: Task) -> tuple[bytes, str, dict]:
        form = await request.form(max_files=1)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise self._refuse(422, "fields", "image: send the image as a file field 'image'")
        values: dict[str, Any] = {TEXTS[task]: []}  # none sent: "give 1 to N", not "missing"
        for key in form:
            if key == "image":
                continue
            listed = form.getlist(key)
            values[key] = listed if key in LIST_FIELDS else listed[-1]
        return await upload.read(), upload.filename or "upload", values

    async def _read_json(self, request: Request) -> tuple[bytes, str, dict]:
        try:
            body = await request.json()
        except ValueError:
            raise self._refuse(400, "json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise self._refuse(422, "fields", "the JSON body must be an object")
        encoded = body.pop("image", None)
        name = body.pop("name", "upload")
        if not isinstance(encoded, str) or not encoded:
            raise self._refuse(422, "fields", "image: a base64 string is required")
        if not isinstance(name, str):
            raise self._refuse(422, "fields", "name: must be a string")
        if encoded.startswith("data:"):
            encoded = encoded.partition(",")[2]
        try:
            image = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise self._refuse(400, "image", "image: not valid base64") from None
        return image, name, body

    def _texts(self, task: Task, values: list[str]) -> list[str]:
        """The findings or phrases, stripped, checked against the limits (and the vocabulary
        in strict mode)."""
        field = TEXTS[task]
        limits = self._limits
        texts = [value.strip() for value in values]
        if not texts or not all(texts):
            raise self._refuse(422, "fields", f"{field}: give 1 to {limits.max_phrases} non-empty")
        if len(texts) > limits.max_phrases:
            raise self._refuse(
                422, "fields", f"{field}: {len(texts)} given, at most {limits.max_phrases} allowed"
            )
        long = [t[:40] for t in texts if len(t) > limits.max_phrase_chars]
        if long:
            raise self._refuse(
                422,
                "fields",
                f"{field}: at most {limits.max_phrase_chars} characters each; too long: {long}",
            )
        if task == "classify" and self._strict:
            unknown = [t for t in texts if t not in self._findings]
            if unknown:
                raise self._refuse(
                    422,
                    "unknown_finding",
                    f"findings: unknown {unknown}; allowed: {', '.join(self._findings)}",
                )
        return texts

    def _refuse(self, status: int, reason: str, detail: str) -> HTTPException:
        self._rejected.inc(tags={"reason": reason})
        return HTTPException(status_code=status, detail=detail)
