"""The model deployment: a RadZero from the registry, batched forwards off the event loop, and
hot swaps through ``user_config``."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from ray import serve
from ray.serve.metrics import Counter, Histogram

from radzero import registry, storage
from radzero.cli.options import resolve_path
from radzero.inference import InputError, Query, answer_batch
from radzero.model.radzero import RadZero
from radzero.platform.session import default_device

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to answer, and what ``/v1/model`` says of it."""

    model: RadZero
    reference: str
    registry: str | None
    uri: str
    card: dict[str, Any] | None
    loaded_at: str

    @property
    def version(self) -> dict[str, Any]:
        """Which model answered: the reference asked for and the version it resolved to."""
        card = self.card or {}
        return {
            "reference": self.reference,
            "name": card.get("name"),
            "version": card.get("version"),
            "uri": self.uri,
        }

    @property
    def threshold(self) -> float | None:
        """The card's segmentation threshold, chosen on validation Dice, when it has one."""
        test = ((self.card or {}).get("metrics") or {}).get("test") or {}
        value = test.get("dice_threshold")
        return None if value is None else float(value)


def load_model(reference: str, root: str | None) -> LoadedModel:
    """Build the model ``reference`` names (a registry reference, a folder or a URI) and read
    its card (the registry's, else a ``card.json`` beside the weights). Relative paths are
    taken from $RADZERO_ROOT, else the working directory."""
    root = resolve_path(root) if root else None
    if registry.is_reference(reference):
        uri = registry.resolve(reference, root)
    else:
        uri = resolve_path(reference)
    model = RadZero.from_pretrained(uri).eval().to(default_device())
    card_uri = storage.join(uri, registry.CARD_NAME)
    card = json.loads(storage.read_text(card_uri)) if storage.exists(card_uri) else None
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return LoadedModel(model, reference, root, str(uri), card, now)


class ModelReplica:
    """Answers :class:`radzero.inference.Query` objects in batches.

    ``user_config`` (see :meth:`ServeJobConfig.model_user_config`) names the model and the
    batching. A changed model is loaded beside the serving one and swapped in when ready; when
    the load fails the old one keeps serving and the error shows in the log and in
    :meth:`info`. Only the first load may fail the replica (there is nothing to keep).
    """

    def __init__(self) -> None:
        self._loaded: LoadedModel | None = None
        self._swap_error: dict[str, Any] | None = None
        self._threshold = 0.5
        self._batch_sizes = Histogram(
            "radzero_batch_size",
            description="Images per model forward.",
            boundaries=[1, 2, 4, 8, 16, 32, 64],
        )
        self._swaps = Counter(
            "radzero_model_swaps_total",
            description="Model loads after a user_config change, by outcome.",
            tag_keys=("outcome",),
        )

    def reconfigure(self, config: dict[str, Any]) -> None:
        self._batched.set_max_batch_size(int(config["max_batch_size"]))
        self._batched.set_batch_wait_timeout_s(float(config["batch_wait_s"]))
        self._threshold = float(config["threshold"])
        source = (config["model"], config.get("registry"))
        loaded = self._loaded
        if loaded is None or source != (loaded.reference, loaded.registry):
            started = time.perf_counter()
            try:
                loaded = load_model(*source)
            except Exception as err:  # a bad reference or checkpoint: keep what serves
                if self._loaded is None:
                    raise
                self._swaps.inc(tags={"outcome": "failed"})
                self._swap_error = {"model": source[0], "error": f"{type(err).__name__}: {err}"}
                log.error(
                    "radzero: model %r not loaded, %s keeps serving: %s",
                    source[0],
                    self._loaded.version,
                    self._swap_error["error"],
                )
            else:
                self._loaded, self._swap_error = loaded, None
                self._swaps.inc(tags={"outcome": "loaded"})
                log.info(
                    "radzero: serving %s (loaded in %.1f s)",
                    loaded.version,
                    time.perf_counter() - started,
                )
        assert self._loaded is not None
        self._loaded.model.text.cache_size = int(config["text_cache_size"])

    async def answer(self, query: Query) -> dict[str, Any] | InputError:
        """One query's answer (with the version that computed it), or why its image was refused."""
        return await self._batched(query)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def _batched(self, queries: list[Query]) -> list[dict[str, Any] | InputError]:
        loaded = self._loaded
        assert loaded is not None
        self._batch_sizes.observe(len(queries))
        default = loaded.threshold if loaded.threshold is not None else self._threshold
        queries = [
            replace(q, threshold=default) if q.task == "segment" and q.threshold is None else q
            for q in queries
        ]
        answers = await asyncio.to_thread(answer_batch, loaded.model, queries)
        return [a if isinstance(a, InputError) else {**a, "model": loaded.version} for a in answers]

    def info(self) -> dict[str, Any]:
        """The serving model: version, card, templates, resolution, thresholds, last swap error."""
        loaded = self._loaded
        assert loaded is not None
        model = loaded.model
        return {
            "model": loaded.version,
            "loaded_at": loaded.loaded_at,
            "card": loaded.card,
            "templates": list(model.config.templates),
            "resolution": model.preprocess.image_size,
            "threshold": loaded.threshold if loaded.threshold is not None else self._threshold,
            "threshold_from": "card" if loaded.threshold is not None else "config",
            "swap_error": self._swap_error,
        }
