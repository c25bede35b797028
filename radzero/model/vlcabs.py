"""VL-CABS: vision-language cross-attention based on similarity (docs/method.md)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

Similarity = Literal["cos", "dot"]

# Above this many (image, sentence, token) triples the sentence axis is processed in chunks.
AUTO_CHUNK_ELEMENTS = 2**25


def vlcabs(
    text: torch.Tensor,
    tokens: torch.Tensor,
    tau: float | torch.Tensor,
    similarity: Similarity = "cos",
    *,
    chunk_size: int | None = None,
    return_scores: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Score every sentence against every image through similarity-based cross-attention.

    Args:
        text: (N, D) sentence embeddings.
        tokens: (B, L, D) vision tokens (CLS first when the caller includes it).
        tau: temperature, a float or a 0-d tensor.
        similarity: "cos" (s = cos(v, t) / tau) or "dot" (s = v.t / sqrt(D)).
        chunk_size: sentences per chunk. None picks whole-batch or chunks of a size that keeps
            one chunk's (B, n, L) intermediates under ``AUTO_CHUNK_ELEMENTS``. Chunks are
            recomputed in backward, so memory beyond the outputs stays O(B * chunk * L).
        return_scores: return the (B, N, L) patch scores (the similarity maps before
            upsampling); training needs only the logits.

    Returns:
        logits (B, N) in at least float32: cos(u_bn, t_n) / tau with u_bn the attention-weighted
        sum of the tokens (L2-normalised tokens for "cos"), and scores (B, N, L) or None.
    """
    if text.ndim != 2 or tokens.ndim != 3 or text.shape[-1] != tokens.shape[-1]:
        raise ValueError(
            f"expected text (N, D) and tokens (B, L, D), got {tuple(text.shape)} and "
            f"{tuple(tokens.shape)}"
        )
    if similarity not in ("cos", "dot"):
        raise ValueError(f"similarity must be 'cos' or 'dot', got {similarity!r}")
    if not torch.is_tensor(tau):
        tau = torch.tensor(float(tau), dtype=torch.float32, device=tokens.device)
    keys = F.normalize(tokens, dim=-1) if similarity == "cos" else tokens
    n_text, (batch, length, _) = text.shape[0], tokens.shape
    if chunk_size is None:
        chunk_size = max(1, AUTO_CHUNK_ELEMENTS // max(1, batch * length))
    if chunk_size >= n_text:
        return _vlcabs_block(text, keys, tau, similarity, return_scores)

    grad = torch.is_grad_enabled() and (
        text.requires_grad or keys.requires_grad or tau.requires_grad
    )
    logits, scores = [], []
    for part in text.split(chunk_size):
        if grad:
            out = checkpoint(
                _vlcabs_block, part, keys, tau, similarity, return_scores, use_reentrant=False
            )
        else:
            out = _vlcabs_block(part, keys, tau, similarity, return_scores)
        logits.append(out[0])
        scores.append(out[1])
    return torch.cat(logits, 1), torch.cat(scores, 1) if return_scores else None


def _vlcabs_block(
    text: torch.Tensor,
    keys: torch.Tensor,
    tau: torch.Tensor,
    similarity: str,
    return_scores: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Unchunked VL-CABS for a block of sentences; ``keys`` already normalised for "cos"."""
    wide = torch.promote_types(keys.dtype, torch.float32)  # softmax and logits never in 16 bit
    text_unit = F.normalize(text, dim=-1)
    if similarity == "cos":
        raw = torch.einsum("bld,nd->bnl", keys, text_unit.to(keys.dtype))
        scores = raw.to(wide) / tau
    else:
        raw = torch.einsum("bld,nd->bnl", keys, text.to(keys.dtype))
        scores = raw.to(wide) / math.sqrt(text.shape[-1])
    attn = scores.softmax(dim=-1)
    pooled = torch.bmm(attn.to(keys.dtype), keys)  # (B, n, D)
    cos = (F.normalize(pooled.to(wide), dim=-1) * text_unit.to(wide)).sum(-1)
    return cos / tau, scores if return_scores else None
