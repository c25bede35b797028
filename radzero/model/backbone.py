"""The frozen DINOv2-style vision backbone and its preprocessing."""

from __future__ import annotations

import torch
from torch import nn
from transformers import Dinov2Config, Dinov2Model
from transformers.image_processing_utils import ImageProcessingMixin

from radzero.model.config import VisionConfig
from radzero.model.preprocess import PreprocessConfig, resolve_preprocess


class FrozenBackbone(nn.Module):
    """A DINOv2 ViT that is never trained: no gradients, always in eval mode.

    Returns the last hidden state (after the final LayerNorm), CLS first. Any square input
    whose side is a multiple of the patch size works; position embeddings are interpolated.
    """

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        if config.checkpoint:
            self.model = Dinov2Model.from_pretrained(config.checkpoint)
            processor, _ = ImageProcessingMixin.get_image_processor_dict(config.checkpoint)
        elif config.hf_config is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                self.model = Dinov2Model(Dinov2Config(**config.hf_config))
            processor = {}
        else:
            raise ValueError("vision config needs a checkpoint (hub id or path) or an hf_config")
        self.model.requires_grad_(False)
        self.model.eval()
        hf = self.model.config
        self.patch_size = int(hf.patch_size)
        self.hidden_size = int(hf.hidden_size)
        self.num_heads = int(hf.num_attention_heads)
        self.preprocess: PreprocessConfig = resolve_preprocess(
            processor, image_size=config.image_size, default_size=int(hf.image_size)
        )
        if self.preprocess.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.preprocess.image_size} is not a multiple of the backbone's "
                f"patch size {self.patch_size}"
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
