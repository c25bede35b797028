"""The RadZero model: frozen backbone -> align layers -> VL-CABS <- text encoder."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from radzero.model.align import AlignLayers
from radzero.model.backbone import FrozenBackbone
from radzero.model.config import RadZeroConfig, get_model_config
from radzero.model.text import TextEncoder
from radzero.model.vlcabs import vlcabs

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


class RadZero(nn.Module):
    """RadZero with an open_clip-shaped API plus similarity maps.

    Only the align layers, shared LayerNorm, text encoder (when trainable), text projection and
    temperature are trainable; the backbone is frozen and referenced, never copied.
    """

    def __init__(self, config: RadZeroConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = FrozenBackbone(config.vision)
        self.preprocess = self.backbone.preprocess
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

    def forward(
        self,
        sentences: Sequence[str],
        pixels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training forward: logits (B, N) from pixels or from cached backbone ``features``."""
        logits, _ = self.score(self._tokens(pixels, features), self.encode_text(sentences))
        return logits

    @torch.no_grad()
    def classify(
        self,
        pixels: torch.Tensor | None,
        findings: Sequence[str],
        templates: Sequence[str] | None = None,
        *,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Zero-shot probabilities (B, F): sigmoid of the logit of "There is {finding}".

        With several templates the logits of one finding are averaged before the sigmoid.
        Cached backbone ``features`` may stand in for ``pixels``.
        """
        templates = list(templates or self.config.templates)
        prompts = [t.format(f) for f in findings for t in templates]
        tokens = self._tokens(pixels, features)
        logits, _ = self.score(tokens, self.encode_text(prompts))
        logits = logits.view(logits.shape[0], len(findings), len(templates)).mean(-1)
        return logits.sigmoid()

    @torch.no_grad()
    def similarity_maps(
        self,
        pixels: torch.Tensor | None,
        phrases: Sequence[str],
        *,
        features: torch.Tensor | None = None,
        size: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Pixel-level similarity maps (B, P, H, W) in [0, 1] for free-text phrases.

        The patch scores (CLS dropped) on the patch grid, bilinearly upsampled to ``size``
        (default: the model's input size; align_corners=False), then a sigmoid.
        """
        tokens = self._tokens(pixels, features)
        _, scores = self.score(tokens, self.encode_text(list(phrases)), return_scores=True)
        size = size or (self.preprocess.image_size,) * 2
        return patch_scores_to_maps(scores, self.config.align.include_cls, size)

    def _tokens(self, pixels: torch.Tensor | None, features: torch.Tensor | None) -> torch.Tensor:
        if (pixels is None) == (features is None):
            raise ValueError("pass exactly one of pixels or features")
        return self.image_tokens(self.backbone_tokens(pixels) if features is None else features)

    # -- persistence ------------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint holds: every parameter that trains."""
        return {
            name: p.detach().contiguous() for name, p in self.named_parameters() if p.requires_grad
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config JSON + safetensors of the trainable weights to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, "model": self.config.to_dict()}
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        save_file(self.trainable_state_dict(), str(directory / WEIGHTS_NAME))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> RadZero:
        """Load a model written by ``save_pretrained`` (never unpickles)."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: not a RadZero checkpoint folder")
        try:
            meta = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{config_path} is not valid JSON: {err}") from err
        if meta.get("format_version") != FORMAT_VERSION or "model" not in meta:
            version = meta.get("format_version")
            raise ValueError(f"{config_path}: unsupported checkpoint format {version!r}")
        model = cls(RadZeroConfig.from_dict(meta["model"]))
        try:
            state = load_file(str(weights_path))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{weights_path} is corrupt or unreadable: {err}") from err
        model.load_trainable_state_dict(state, source=str(weights_path))
        return model

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], source: str = "") -> None:
        """Load trainable weights, with a clear error when they don't match the config."""
        expected = self.trainable_state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(
            f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state and state[k].shape != v.shape
        )
        if missing or unexpected or wrong:
            raise ValueError(
                f"checkpoint {source} does not match its config: "
                f"{len(missing)} missing {missing[:3]}, {len(unexpected)} unexpected "
                f"{unexpected[:3]}, {len(wrong)} with wrong shapes {wrong[:3]}"
            )
        self.load_state_dict(state, strict=False)


def patch_scores_to_maps(scores: torch.Tensor, has_cls: bool, size: Sequence[int]) -> torch.Tensor:
    """(B, P, T) patch scores -> (B, P, H, W) sigmoid maps on a square patch grid."""
    patches = scores[..., 1:] if has_cls else scores
    grid = math.isqrt(patches.shape[-1])
    batch, phrases = patches.shape[:2]
    grid_scores = patches.reshape(batch * phrases, 1, grid, grid)
    up = F.interpolate(grid_scores, size=tuple(size), mode="bilinear", align_corners=False)
    return up.sigmoid().view(batch, phrases, *size)


def create_model(name_or_config: str | RadZeroConfig | dict) -> RadZero:
    """Build a RadZero from a shipped config name, a config object or a config dict."""
    if isinstance(name_or_config, str):
        config = get_model_config(name_or_config)
    elif isinstance(name_or_config, dict):
        config = RadZeroConfig.from_dict(name_or_config)
    else:
        config = name_or_config
    return RadZero(config)
