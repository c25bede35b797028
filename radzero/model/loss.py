"""MP-NCE: the multi-positive contrastive loss of RadZero (docs/method.md)."""

from __future__ import annotations

import torch


def positive_pairs(
    owner: torch.Tensor, n_images: int, sentence_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, N) bool: which (image, sentence) pairs are never treated as negatives.

    Without ``sentence_ids`` that is each sentence with its own image (the paper). With them,
    a sentence is also positive for every other image that has an identical sentence (same id),
    which removes false negatives such as "There is no pneumothorax" shared across images.
    """
    own = torch.zeros(n_images, owner.numel(), dtype=torch.bool, device=owner.device)
    own[owner, torch.arange(owner.numel(), device=owner.device)] = True
    if sentence_ids is None:
        return own
    if sentence_ids.shape != owner.shape:
        raise ValueError("sentence_ids must have one entry per sentence, like owner")
    _, ids = torch.unique(sentence_ids, return_inverse=True)
    has_text = torch.zeros(n_images, int(ids.max()) + 1, dtype=torch.bool, device=owner.device)
    has_text[owner, ids] = True
    return has_text[:, ids]


def mp_nce_loss(
    logits: torch.Tensor,
    owner: torch.Tensor,
    *,
    sentence_ids: torch.Tensor | None = None,
    average: bool = False,
) -> torch.Tensor:
    """MP-NCE over a batch of B images and N sentences: L_I + L_T, each a mean over sentences.

    Args:
        logits: (B, N) image-sentence logits (already divided by the temperature).
        owner: (N,) long, the image index of each sentence.
        sentence_ids: optional (N,) ids of the sentence texts; identical texts of other images
            are then not counted as negatives (off by default, as in the paper).
        average: return (L_I + L_T) / 2 as the authors' code does instead of the paper's sum.

    L_I: for sentence n, softmax of its image's logit against that image's logits with the
    sentences of other images. L_T: for sentence n, softmax over all images. Computed with
    log-sum-exp in at least float32, so it is stable at small temperatures and in bfloat16.
    """
    if logits.ndim != 2 or owner.ndim != 1 or owner.numel() != logits.shape[1]:
        raise ValueError(
            f"expected logits (B, N) and owner (N,), got {tuple(logits.shape)}, "
            f"{tuple(owner.shape)}"
        )
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    n_images, n_text = logits.shape
    if n_text == 0:
        raise ValueError("mp_nce_loss needs at least one sentence")
    owner = owner.long()
    keep = positive_pairs(owner, n_images, sentence_ids)
    positive = logits[owner, torch.arange(n_text, device=logits.device)]
    negatives = logits.masked_fill(keep, float("-inf"))
    # L_I: one log-sum-exp of negatives per image, shared by all of that image's sentences.
    image_neg = torch.logsumexp(negatives, dim=1)[owner]
    loss_image = torch.logaddexp(positive, image_neg) - positive
    # L_T: for each sentence, its positive image against every image it is negative for.
    text_neg = torch.logsumexp(negatives, dim=0)
    loss_text = torch.logaddexp(positive, text_neg) - positive
    total = loss_image.mean() + loss_text.mean()
    return total / 2 if average else total
