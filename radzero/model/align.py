"""Trainable DINOv2-style transformer layers between the frozen backbone and VL-CABS."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from radzero.model.config import AlignConfig


class AlignBlock(nn.Module):
    """Pre-norm transformer layer with LayerScale and GELU MLP, no dropout (DINOv2 style)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, layerscale: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.scale1 = nn.Parameter(torch.full((dim,), layerscale))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.scale2 = nn.Parameter(torch.full((dim,), layerscale))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, self_only: bool = False
    ) -> torch.Tensor:
        """``mask``: boolean (T, T), True where attention is allowed. ``self_only``: each token
        attends to itself alone, so attention returns the values (no T x T work)."""
        batch, length, dim = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = v if self_only else F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.scale1 * self.proj(attn.transpose(1, 2).reshape(batch, length, dim))
        return x + self.scale2 * self.mlp(self.norm2(x))


class AlignLayers(nn.Module):
    """0..K trainable layers (0 = one linear projection, the paper's "Linear" ablation).

    Input: backbone tokens (B, 1 + h*w, D), CLS first, square grid. Output: the tokens that
    VL-CABS sees, CLS first when ``include_cls``.
    """

    def __init__(self, config: AlignConfig, dim: int, heads: int, grid: int) -> None:
        super().__init__()
        self.config = config
        heads = config.heads or heads
        if config.layers == 0:
            self.linear = nn.Linear(dim, dim)
            self.blocks = nn.ModuleList()
        else:
            self.linear = None
            self.blocks = nn.ModuleList(
                AlignBlock(dim, heads, config.mlp_ratio, config.layerscale)
                for _ in range(config.layers)
            )
        if config.position == "learned":
            self.position = nn.Parameter(torch.zeros(1, dim, grid, grid))
            nn.init.trunc_normal_(self.position, std=0.02)
        elif config.position == "sincos":
            self.register_buffer("position", sincos_2d(dim, grid), persistent=False)
        else:
            self.position = None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        grid = math.isqrt(tokens.shape[1] - 1)
        if grid * grid != tokens.shape[1] - 1:
            raise ValueError(f"expected CLS + a square grid of patches, got {tokens.shape[1]}")
        x = tokens
        if self.position is not None:
            pos = self.position
            if pos.shape[-1] != grid:
                pos = F.interpolate(pos, size=(grid, grid), mode="bicubic", align_corners=False)
            pos = self.config.position_scale * pos.flatten(2).transpose(1, 2)
            x = torch.cat([x[:, :1], x[:, 1:] + pos], dim=1)
        if not self.config.include_cls:
            x = x[:, 1:]
        if self.linear is not None:
            return self.linear(x)
        window, with_cls = self.config.window, self.config.include_cls
        self_only = window == 0 and not with_cls
        mask = self._mask(grid, x.device) if window is not None and not self_only else None
        for block in self.blocks:
            x = block(x, mask, self_only)
        return x

    def _mask(self, grid: int, device: torch.device) -> torch.Tensor:
        """Boolean (T, T) attention mask: patches see their (2w+1)^2 neighbourhood only."""
        rows, cols = torch.meshgrid(
            torch.arange(grid, device=device), torch.arange(grid, device=device), indexing="ij"
        )
        rows, cols = rows.flatten(), cols.flatten()
        w = self.config.window
        near_rows = (rows[:, None] - rows[None]).abs() <= w
        local = near_rows & ((cols[:, None] - cols[None]).abs() <= w)
        if not self.config.include_cls:
            return local
        n = grid * grid + 1
        mask = torch.zeros(n, n, dtype=torch.bool, device=device)
        mask[0] = True  # CLS sees everything; patches do not see CLS, so nothing global leaks
        mask[1:, 1:] = local
        return mask


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, shape (1, dim, grid, grid)."""
    if dim % 4:
        raise ValueError(f"sincos position embedding needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    coords = torch.arange(grid, dtype=torch.float32)
    angles = coords[:, None] * freq[None]  # (grid, quarter)
    axis = torch.cat([angles.sin(), angles.cos()], dim=1)  # (grid, dim/2)
    rows = axis[:, None, :].expand(grid, grid, dim // 2)
    cols = axis[None, :, :].expand(grid, grid, dim // 2)
    return torch.cat([rows, cols], dim=-1).permute(2, 0, 1).unsqueeze(0)
