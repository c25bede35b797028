"""The frozen DINOv2-style vision backbone, its geometry and its preprocessing."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
import transformers  # a lazy module: the DINOv2 classes load on first use
from torch import nn

from radzero import storage
from radzero.model.config import VisionConfig
from radzero.model.preprocess import PreprocessConfig, resolve_preprocess

if TYPE_CHECKING:
    from transformers import Dinov2Config


class BackboneGeometry(NamedTuple):
    """What a backbone's tokens look like: input side, patches per side, token width."""

    image_size: int
    grid: int
    hidden_size: int


def backbone_hf_config(vision: VisionConfig) -> Dinov2Config:
    """The backbone's Hugging Face config: the checkpoint's ``config.json`` or ``hf_config``.

    Reads no weights (a hub checkpoint fetches its small JSON files only; one on S3 is copied
    whole, once, by :func:`radzero.storage.local_folder`).
    """
    if vision.checkpoint:
        return transformers.Dinov2Config.from_pretrained(storage.local_folder(vision.checkpoint))
    if vision.hf_config is not None:
        return transformers.Dinov2Config(**vision.hf_config)
    raise ValueError("vision config needs a checkpoint (hub id or path) or an hf_config")


def resolve_backbone_preprocess(
    vision: VisionConfig, hf_config: Dinov2Config | None = None
) -> PreprocessConfig:
    """The preprocessing of a backbone created from its config (JSON files only, no weights).

    Mean, std and size come from the checkpoint's ``preprocessor_config.json`` (ImageNet values
    without one); ``vision.image_size`` overrides the size, which defaults to the ViT's input size.
    """
    hf_config = hf_config or backbone_hf_config(vision)
    processor = {}
    if vision.checkpoint:
        processor, _ = transformers.ImageProcessingMixin.get_image_processor_dict(
            storage.local_folder(vision.checkpoint)
        )
    return resolve_preprocess(
        processor, image_size=vision.image_size, default_size=int(hf_config.image_size)
    )


def backbone_geometry(vision: VisionConfig) -> BackboneGeometry:
    """Input side, patch grid and token width of ``vision``, from its configs alone (no weights)."""
    hf_config = backbone_hf_config(vision)
    size = _fitted(resolve_backbone_preprocess(vision, hf_config), hf_config).image_size
    return BackboneGeometry(size, size // hf_config.patch_size, int(hf_config.hidden_size))


def _fitted(preprocess: PreprocessConfig, hf_config: Dinov2Config) -> PreprocessConfig:
    """``preprocess``, refused when its size is not a whole number of patches."""
    if preprocess.image_size % hf_config.patch_size:
        raise ValueError(
            f"image_size {preprocess.image_size} is not a multiple of the backbone's patch size "
            f"{hf_config.patch_size}"
        )
    return preprocess


class FrozenBackbone(nn.Module):
    """A DINOv2 ViT that is never trained: no gradients, always in eval mode.

    Returns the last hidden state (after the final LayerNorm), CLS first. Any square input
    whose side is a multiple of the patch size works; position embeddings are interpolated as
    ``config.position_interpolation`` says.
    ``preprocess`` restores a saved model's preprocessing; None resolves it from the backbone's
    files (:func:`resolve_backbone_preprocess`).
    """

    def __init__(self, config: VisionConfig, preprocess: PreprocessConfig | None = None) -> None:
        super().__init__()
        hf_config = backbone_hf_config(config)
        if config.checkpoint:
            self.model = transformers.Dinov2Model.from_pretrained(
                storage.local_folder(config.checkpoint), config=hf_config, dtype=torch.float32
            )
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                self.model = transformers.Dinov2Model(hf_config)
        if config.position_interpolation == "scale_factor":
            embeddings = self.model.embeddings
            embeddings.interpolate_pos_encoding = functools.partial(
                interpolate_by_scale_factor, embeddings
            )
        self.model.requires_grad_(False)
        self.model.eval()
        self.patch_size = int(hf_config.patch_size)
        self.hidden_size = int(hf_config.hidden_size)
        self.num_heads = int(hf_config.num_attention_heads)
        self.preprocess = _fitted(
            preprocess or resolve_backbone_preprocess(config, hf_config), hf_config
        )

    def train(self, mode: bool = True) -> FrozenBackbone:
        """Stay in eval mode whatever the parent module does."""
        return super().train(False)

    def grid(self, image_size: int | None = None) -> int:
        """Patches per side for a square input of ``image_size`` (default: the configured one)."""
        return (image_size or self.preprocess.image_size) // self.patch_size

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) normalised pixels -> (B, 1 + (S/p)^2, D) tokens."""
        height, width = pixels.shape[-2:]
        if height != width or height % self.patch_size:
            raise ValueError(
                f"backbone input must be square with a side that is a multiple of "
                f"{self.patch_size}, got {height}x{width}"
            )
        return self.model(pixel_values=pixels).last_hidden_state


def interpolate_by_scale_factor(
    module: nn.Module, embeddings: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """The position embeddings of DINOv2's embeddings ``module`` for a ``height`` x ``width``
    pixel input, resized as transformers 4.39 did: bicubic by the scale factor
    (grid + 0.1) / sqrt(P) per axis (the DINO recipe), which samples the source grid slightly
    differently from resizing straight to the grid's size (docs/method.md). The signature after
    ``module`` is that of ``Dinov2Embeddings.interpolate_pos_encoding``.
    """
    table = module.position_embeddings  # (1, 1 + P, D), CLS first
    positions = table.shape[1] - 1
    if embeddings.shape[1] - 1 == positions and height == width:
        return table
    side = math.isqrt(positions)
    patch_height, patch_width = module.patch_embeddings.patch_size
    rows, columns = height // patch_height, width // patch_width
    grid = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    resized = F.interpolate(
        grid.float(),
        scale_factor=((rows + 0.1) / side, (columns + 0.1) / side),
        mode="bicubic",
        align_corners=False,
    ).to(table.dtype)
    if resized.shape[-2:] != (rows, columns):
        raise ValueError(f"position grid {tuple(resized.shape[-2:])} != {(rows, columns)}")
    patches = resized.permute(0, 2, 3, 1).reshape(1, rows * columns, -1)
    return torch.cat([table[:, :1], patches], dim=1)
