"""The RadZero model: frozen backbone -> align layers -> VL-CABS <- text encoder."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from radzero import storage
from radzero.config import deep_merge
from radzero.model.align import AlignLayers
from radzero.model.backbone import FrozenBackbone
from radzero.model.config import (
    CONFIG_NAME,
    FORMAT_VERSION,
    RadZeroConfig,
    bundled_components,
    locate_bundled,
    read_pretrained_meta,
    resolve_model_config,
)
from radzero.model.preprocess import PreprocessConfig
from radzero.model.text import TextEncoder
from radzero.model.vlcabs import vlcabs

WEIGHTS_NAME = "model.safetensors"


class RadZero(nn.Module):
    """RadZero with an open_clip-shaped API plus similarity maps.

    Only the align layers, shared LayerNorm, text encoder (when trainable), text projection and
    temperature are trainable; the backbone is frozen and referenced, never copied.
    ``preprocess`` (a callable: grey (H, W) array -> pixels) is resolved from the backbone when
    the model is created from an architecture, and restored from the saved config by
    :meth:`from_pretrained`.
    """

    def __init__(self, config: RadZeroConfig, preprocess: PreprocessConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = FrozenBackbone(config.vision, preprocess)
        self.preprocess: PreprocessConfig = self.backbone.preprocess
        dim = self.backbone.hidden_size
        self.align = AlignLayers(config.align, dim, self.backbone.num_heads, self.backbone.grid())
        self.text = TextEncoder(config.text, dim)
        self.norm = nn.LayerNorm(dim) if config.align.shared_norm else nn.Identity()
        log_tau = torch.tensor(math.log(config.temperature.init))
        if config.temperature.learnable:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau, persistent=False)

    @property
    def tau(self) -> torch.Tensor:
        """The temperature, clamped to the configured range when one is set."""
        cfg = self.config.temperature
        tau = self.log_tau.exp()
        if cfg.min is not None or cfg.max is not None:
            tau = tau.clamp(cfg.min, cfg.max)
        return tau

    # -- encoders ---------------------------------------------------------------------------
    def backbone_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frozen backbone tokens (B, 1 + L, D): what the feature cache stores."""
        return self.backbone(pixels)

    def image_tokens(self, backbone_tokens: torch.Tensor) -> torch.Tensor:
        """Align layers + shared norm on backbone tokens: the tokens VL-CABS attends over."""
        return self.norm(self.align(backbone_tokens))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) preprocessed pixels -> (B, T, D) tokens (CLS first when included)."""
        return self.image_tokens(self.backbone_tokens(pixels))

    def encode_text(self, sentences: Sequence[str]) -> torch.Tensor:
        """(N,) sentences -> (N, D) embeddings after the shared norm."""
        return self.norm(self.text(sentences))

    # -- scoring ----------------------------------------------------------------------------
    def score(
        self, tokens: torch.Tensor, text: torch.Tensor, return_scores: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """VL-CABS between encoded images and sentences: logits (B, N), scores (B, N, T)."""
        return vlcabs(text, tokens, self.tau, self.config.similarity, return_scores=return_scores)

    @torch.no_grad()
    def classify(
        self,
        findings: Sequence[str],
        templates: Sequence[str] | None = None,
        *,
        images: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Zero-shot probabilities (B, F): sigmoid of the logit of "There is {finding}".

        Give exactly one of ``images`` (preprocessed pixels (B, C, S, S)), ``features``
        (cached backbone tokens (B, 1 + L, D)) or ``tokens`` (what :meth:`encode_image`
        returned for them). With several templates the logits of one finding are averaged
        before the sigmoid.
        """
        templates = list(templates or self.config.templates)
        prompts = [t.format(f) for f in findings for t in templates]
        tokens = self._tokens("classify", images, features, tokens)
        logits, _ = self.score(tokens, self.encode_text(prompts))
        logits = logits.view(logits.shape[0], len(findings), len(templates)).mean(-1)
        return logits.sigmoid()

    @torch.no_grad()
    def similarity_maps(
        self,
        phrases: Sequence[str],
        *,
        images: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        tokens: torch.Tensor | None = None,
        size: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Pixel-level similarity maps (B, P, H, W) in [0, 1] for free-text phrases.

        Give exactly one of ``images``, ``features`` or ``tokens``, as for :meth:`classify`.
        The patch scores (CLS dropped) on the patch grid, bilinearly upsampled to ``size``
        (default: the model's input size; align_corners=False), then a sigmoid.
        """
        tokens = self._tokens("similarity_maps", images, features, tokens)
        _, scores = self.score(tokens, self.encode_text(list(phrases)), return_scores=True)
        size = size or (self.preprocess.image_size,) * 2
        return patch_scores_to_maps(scores, self.config.align.include_cls, size)

    def _tokens(
        self,
        caller: str,
        images: torch.Tensor | None,
        features: torch.Tensor | None,
        tokens: torch.Tensor | None,
    ) -> torch.Tensor:
        if sum(given is not None for given in (images, features, tokens)) != 1:
            raise TypeError(
                f"{caller}() takes exactly one of images= (preprocessed pixels), features= "
                "(cached backbone tokens) or tokens= (encode_image's output)"
            )
        if tokens is not None:
            return tokens
        return self.image_tokens(self.backbone_tokens(images) if features is None else features)

    # -- persistence ------------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint holds: every parameter that trains."""
        return {
            name: p.detach().contiguous() for name, p in self.named_parameters() if p.requires_grad
        }

    def save_pretrained(self, uri: str | os.PathLike) -> str:
        """Write the config (with the resolved preprocessing) as JSON and the trainable weights
        as safetensors to a folder or ``s3://`` prefix; returns ``uri``.

        The config is written last, so a folder that has one holds the weights too.
        """
        meta = {
            "format_version": FORMAT_VERSION,
            "model": self.config.to_dict(),
            "preprocess": self.preprocess.to_dict(),
        }
        storage.write_bytes(storage.join(uri, WEIGHTS_NAME), save(self.trainable_state_dict()))
        storage.write_text(storage.join(uri, CONFIG_NAME), json.dumps(meta, indent=2))
        return str(uri)

    @classmethod
    def from_pretrained(cls, uri: str | os.PathLike, registry: str | None = None) -> RadZero:
        """Load a model written by ``save_pretrained`` from a folder or ``s3://`` prefix, or
        from the model registry by reference (``name``, ``name@latest``, ``name@best``,
        ``name@3``: any string that is not a path), in the registry at ``registry`` or else at
        ``RADZERO_REGISTRY`` (see :mod:`radzero.registry`).

        The preprocessing is the saved one (a config without it, from before it was saved,
        resolves it from the backbone). A converted model's backbone and text encoder are
        bundled in its folder (see :mod:`radzero.model.convert`). Never unpickles.
        """
        from radzero import registry as model_registry  # imported here: it imports this module

        if model_registry.is_reference(str(uri)):
            uri = model_registry.resolve(str(uri), root=registry)
        meta = read_pretrained_meta(uri)
        weights_uri = storage.join(uri, WEIGHTS_NAME)
        try:
            data = storage.read_bytes(weights_uri)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{weights_uri} is missing: not a RadZero checkpoint folder"
            ) from None
        try:
            state = load(data)
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{weights_uri} is corrupt or unreadable: {err}") from err
        saved = meta.get("preprocess")
        preprocess = None if saved is None else PreprocessConfig.from_dict(saved)
        model = cls(RadZeroConfig.from_dict(locate_bundled(meta["model"], uri)), preprocess)
        model.load_trainable_state_dict(state, source=weights_uri)
        return model

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], source: str = "") -> None:
        """Load trainable weights, with a clear error when they don't match the config."""
        mismatch = state_mismatch(self.trainable_state_dict(), state)
        if mismatch:
            raise ValueError(f"checkpoint {source} does not match its config: {mismatch}")
        self.load_state_dict(state, strict=False)


def state_mismatch(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> str | None:
    """What keeps ``state`` from loading where ``expected`` is (the missing, unexpected and
    misshapen tensors, a few of each named), or None when it fits exactly."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    if not (missing or unexpected or wrong):
        return None
    return (
        f"{len(missing)} missing {missing[:3]}, {len(unexpected)} unexpected "
        f"{unexpected[:3]}, {len(wrong)} with wrong shapes {wrong[:3]}"
    )


def patch_scores_to_maps(scores: torch.Tensor, has_cls: bool, size: Sequence[int]) -> torch.Tensor:
    """(B, P, T) patch scores -> (B, P, H, W) sigmoid maps on a square patch grid."""
    patches = scores[..., 1:] if has_cls else scores
    grid = math.isqrt(patches.shape[-1])
    batch, phrases = patches.shape[:2]
    grid_scores = patches.reshape(batch * phrases, 1, grid, grid)
    up = F.interpolate(grid_scores, size=tuple(size), mode="bilinear", align_corners=False)
    return up.sigmoid().view(batch, phrases, *size)


def create_model(
    name_or_config: str | os.PathLike | RadZeroConfig | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> RadZero:
    """A new (untrained) RadZero from an architecture: a registered name or ``save_pretrained``
    folder (see :func:`resolve_model_config`), a config object or a config dict, with nested
    ``overrides`` deep-merged in. Its preprocessing is resolved from the backbone."""
    if isinstance(name_or_config, (str, os.PathLike)):
        return RadZero(resolve_model_config(name_or_config, overrides))
    if isinstance(name_or_config, RadZeroConfig):
        name_or_config = name_or_config.to_dict()
    return RadZero(RadZeroConfig.from_dict(deep_merge(name_or_config, overrides or {})))


def copy_pretrained(source: str | os.PathLike, target: str | os.PathLike) -> str:
    """Copy the model files of a ``save_pretrained`` folder (or a training checkpoint, which
    holds them) to another folder or ``s3://`` prefix, without building the model; the
    components it bundles (a converted model's backbone and text encoder) go along."""
    meta = read_pretrained_meta(source)  # refuse a folder that is not a model
    for folder in bundled_components(meta["model"]).values():
        origin = storage.join(source, folder)
        files = storage.folder_files(origin)
        if not files:
            raise FileNotFoundError(f"{origin} is missing: the model's config bundles it")
        for name in files:
            data = storage.read_bytes(storage.join(origin, name))
            storage.write_bytes(storage.join(target, folder, name), data)
    for name in (WEIGHTS_NAME, CONFIG_NAME):  # the config last, as save_pretrained writes
        storage.write_bytes(
            storage.join(target, name), storage.read_bytes(storage.join(source, name))
        )
    return str(target)
