"""The serving stage's config: which model, how requests batch, how replicas scale, what a
request may hold. Every error shows at load, before Ray."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from radzero import storage
from radzero.config import path_field
from radzero.data.images import MAX_PIXELS

MIB = 2**20


@dataclass
class BatchingSection:
    """``@serve.batch`` of the model replicas: up to ``max_batch_size`` images per forward,
    waiting at most ``wait_s`` after the first one for the rest."""

    max_batch_size: int = 8
    wait_s: float = 0.02

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.wait_s < 0:
            raise ValueError("config batching.max_batch_size must be >= 1 and wait_s >= 0")


@dataclass
class AutoscalingSection:
    """Serve's autoscaling of the model replicas (docs/serving.md)."""

    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 8.0
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 60.0
    look_back_period_s: float = 15.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(
                "config autoscaling needs 0 <= min_replicas <= max_replicas and max_replicas >= 1, "
                f"got {self.min_replicas} and {self.max_replicas}"
            )
        if self.target_ongoing_requests <= 0:
            raise ValueError("config autoscaling.target_ongoing_requests must be > 0")


@dataclass
class LimitsSection:
    """What one request may hold. A body over ``max_body_mb`` gets 413, an image whose header
    claims more than ``max_pixels`` pixels 413, a phrase list outside these bounds 422."""

    max_body_mb: float = 32.0
    max_pixels: int = MAX_PIXELS
    max_phrases: int = 16
    max_phrase_chars: int = 200

    def __post_init__(self) -> None:
        if self.max_body_mb <= 0 or self.max_pixels < 1:
            raise ValueError("config limits.max_body_mb and max_pixels must be positive")
        if self.max_phrases < 1 or self.max_phrase_chars < 1:
            raise ValueError("config limits.max_phrases and max_phrase_chars must be >= 1")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MIB)


@dataclass
class ServeJobConfig:
    """The served application: the model (a registry reference such as ``name@best``, or a
    folder or ``s3://`` URI of ``save_pretrained``) in ``registry`` (default:
    $RADZERO_REGISTRY), two deployments (an HTTP ingress and the model replicas), and the HTTP
    proxy on ``host``:``port``.

    ``findings`` are the names the page offers and ``strict_findings`` accepts (default: the
    finding vocabulary of preprocessing); ``threshold`` is the segmentation threshold when
    neither the request nor the model's card gives one. ``api_key_env`` names an environment
    variable of the replicas holding the key that ``/v1/*`` requests must send as
    ``Authorization: Bearer <key>``. ``model_gpus`` None: one GPU per model replica when the
    cluster :func:`deploy` runs on has GPUs, else none.

    Each model replica works on ``max_ongoing_requests`` and queues ``max_queued_requests``
    more; beyond that a request gets 503 with ``Retry-After: retry_after_s``. The ingress
    takes up to ``ingress_max_ongoing_requests`` at once per replica (the same 503 beyond
    that, as many again queued), so the model's queue is what fills first.
    """

    model: str = "radzero-local@best"
    registry: str | None = path_field(None)
    name: str = "radzero"
    route_prefix: str = "/"
    host: str = "127.0.0.1"
    port: int = 8000
    request_timeout_s: float = 60.0
    batching: BatchingSection = field(default_factory=BatchingSection)
    autoscaling: AutoscalingSection = field(default_factory=AutoscalingSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    model_cpus: float = 0.5
    model_gpus: float | None = None
    ingress_cpus: float = 0.1
    ingress_replicas: int = 1
    ingress_max_ongoing_requests: int = 128
    max_ongoing_requests: int = 16
    max_queued_requests: int = 64
    retry_after_s: float = 2.0
    text_cache_size: int = 4096
    threshold: float = 0.5
    findings: list[str] | None = None
    strict_findings: bool = False
    api_key_env: str | None = None
    storage: storage.S3Options = field(default_factory=storage.S3Options)

    def __post_init__(self) -> None:
        if self.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError(
                f"config max_ongoing_requests ({self.max_ongoing_requests}) must be >= "
                f"batching.max_batch_size ({self.batching.max_batch_size}), or batches never fill"
            )
        if self.max_queued_requests < 1 and self.max_queued_requests != -1:
            raise ValueError("config max_queued_requests must be >= 1 (or -1: no limit)")
        if self.ingress_max_ongoing_requests < 1:
            raise ValueError("config ingress_max_ongoing_requests must be >= 1")
        if self.model_cpus <= 0 or self.ingress_cpus <= 0:
            raise ValueError("config model_cpus and ingress_cpus must be > 0")
        if (self.model_gpus or 0) < 0 or self.ingress_replicas < 1 or self.text_cache_size < 1:
            raise ValueError(
                "config model_gpus must be >= 0, ingress_replicas and text_cache_size >= 1"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"config threshold must be in [0, 1], got {self.threshold}")
        if self.request_timeout_s <= 0 or self.retry_after_s < 0:
            raise ValueError("config request_timeout_s must be > 0 and retry_after_s >= 0")
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"config route_prefix must start with '/', got {self.route_prefix!r}")

    def model_user_config(self) -> dict[str, Any]:
        """The model deployment's ``user_config``: changing it swaps the model or the batching
        on the running replicas."""
        return {
            "model": self.model,
            "registry": self.registry,
            "max_batch_size": self.batching.max_batch_size,
            "batch_wait_s": self.batching.wait_s,
            "text_cache_size": self.text_cache_size,
            "threshold": self.threshold,
        }

    def ingress_user_config(self) -> dict[str, Any]:
        """The ingress deployment's ``user_config``: the request limits and their checks."""
        return {
            "limits": asdict(self.limits),
            "findings": self.findings,
            "strict_findings": self.strict_findings,
            "api_key_env": self.api_key_env,
            "request_timeout_s": self.request_timeout_s,
        }
