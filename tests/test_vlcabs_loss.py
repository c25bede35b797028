"""VL-CABS and MP-NCE against brute-force loops written straight from the formulas."""

from __future__ import annotations

import math

import pytest
import torch

from radzero.model import mp_nce_loss, vlcabs

F64 = torch.float64


def brute_vlcabs(text, tokens, tau, similarity):
    """Loops over images, sentences and tokens (docs/method.md)."""
    batch, length, dim = tokens.shape
    logits = torch.zeros(batch, text.shape[0], dtype=F64)
    scores = torch.zeros(batch, text.shape[0], length, dtype=F64)
    for b in range(batch):
        for n in range(text.shape[0]):
            t = text[n]
            s = []
            for k in range(length):
                v = tokens[b, k]
                if similarity == "cos":
                    s.append(torch.dot(v, t) / (v.norm() * t.norm()) / tau)
                else:
                    s.append(torch.dot(v, t) / math.sqrt(dim))
            s = torch.stack(s)
            a = torch.exp(s - s.max())
            a = a / a.sum()
            u = torch.zeros(dim, dtype=F64)
            for k in range(length):
                v = tokens[b, k]
                u = u + a[k] * (v / v.norm() if similarity == "cos" else v)
            logits[b, n] = torch.dot(u, t) / (u.norm() * t.norm()) / tau
            scores[b, n] = s
    return logits, scores


def brute_mp_nce(logits, owner):
    """The paper's L_I + L_T, each averaged over the N_T sentences, with explicit loops."""
    n_images, n_text = logits.shape
    loss_i, loss_t = 0.0, 0.0
    for n in range(n_text):
        i = int(owner[n])
        pos = torch.exp(logits[i, n])
        neg_i = sum(torch.exp(logits[i, m]) for m in range(n_text) if int(owner[m]) != i)
        neg_t = sum(torch.exp(logits[j, n]) for j in range(n_images) if j != i)
        loss_i = loss_i - torch.log(pos / (pos + neg_i))
        loss_t = loss_t - torch.log(pos / (pos + neg_t))
    return loss_i / n_text + loss_t / n_text


def random_case(seed, batch=3, length=5, dim=8, per_image=(1, 3, 5)):
    gen = torch.Generator().manual_seed(seed)
    owner = torch.cat([torch.full((k,), i) for i, k in enumerate(per_image[:batch])])
    text = torch.randn(len(owner), dim, generator=gen, dtype=F64, requires_grad=True)
    tokens = torch.randn(batch, length, dim, generator=gen, dtype=F64, requires_grad=True)
    return text, tokens, owner


@pytest.mark.parametrize("similarity", ["cos", "dot"])
@pytest.mark.parametrize("per_image", [(1, 1, 1), (1, 3, 5), (2, 4, 2), (5, 5, 5)])
def test_vlcabs_and_loss_match_brute_force(similarity, per_image):
    text, tokens, owner = random_case(hash(per_image) % 1000, per_image=per_image)
    tau = torch.tensor(0.3, dtype=F64, requires_grad=True)
    logits, scores = vlcabs(text, tokens, tau, similarity)
    loss = mp_nce_loss(logits, owner)
    grads = torch.autograd.grad(loss, (text, tokens, tau))

    ref_logits, ref_scores = brute_vlcabs(text, tokens, tau, similarity)
    ref_loss = brute_mp_nce(ref_logits, owner)
    ref_grads = torch.autograd.grad(ref_loss, (text, tokens, tau))

    torch.testing.assert_close(logits.double(), ref_logits, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(scores.double(), ref_scores, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)


def test_chunked_path_matches_whole_batch_in_values_and_gradients():
    text, tokens, owner = random_case(7, batch=3, per_image=(4, 3, 5))
    tau = torch.tensor(0.07, dtype=F64, requires_grad=True)
    whole, whole_scores = vlcabs(text, tokens, tau)
    grads = torch.autograd.grad(mp_nce_loss(whole, owner), (text, tokens, tau))
    chunked, chunked_scores = vlcabs(text, tokens, tau, chunk_size=5)
    chunk_grads = torch.autograd.grad(mp_nce_loss(chunked, owner), (text, tokens, tau))
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(chunked_scores, whole_scores)
    for got, want in zip(chunk_grads, grads, strict=True):
        torch.testing.assert_close(got, want)


def test_permuting_images_with_owners_permutes_logits_and_keeps_loss():
    text, tokens, owner = random_case(3, batch=3, per_image=(2, 3, 1))
    logits, _ = vlcabs(text, tokens, 0.1)
    perm = torch.tensor([2, 0, 1])
    inverse = torch.argsort(perm)
    permuted, _ = vlcabs(text, tokens[perm], 0.1)
    torch.testing.assert_close(permuted, logits[perm])
    torch.testing.assert_close(mp_nce_loss(permuted, inverse[owner]), mp_nce_loss(logits, owner))


def test_average_option_halves_the_paper_loss():
    text, tokens, owner = random_case(5)
    logits, _ = vlcabs(text, tokens, 0.2)
    torch.testing.assert_close(
        mp_nce_loss(logits, owner, average=True), mp_nce_loss(logits, owner) / 2
    )


def test_single_positive_is_symmetric_infonce():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 4, generator=gen, dtype=F64) * 5
    owner = torch.arange(4)
    target = torch.arange(4)
    ce = torch.nn.functional.cross_entropy
    expected = ce(logits.T, target) + ce(logits, target)
    torch.testing.assert_close(mp_nce_loss(logits, owner), expected)


def test_false_negative_mask_removes_identical_sentences_of_other_images():
    # Image 0 and image 1 both say "no pneumothorax" (id 7): with the mask, neither copy is a
    # negative for the other image; the loss equals the brute force with those terms removed.
    logits = torch.tensor([[2.0, 1.0, 0.5], [1.5, 3.0, 0.2]], dtype=F64)
    owner = torch.tensor([0, 0, 1])
    ids = torch.tensor([7, 3, 7])
    masked = mp_nce_loss(logits, owner, sentence_ids=ids)
    e = torch.exp
    l_i = (
        -(
            torch.log(e(logits[0, 0]) / e(logits[0, 0]))
            + torch.log(e(logits[0, 1]) / e(logits[0, 1]))
            + torch.log(e(logits[1, 2]) / (e(logits[1, 2]) + e(logits[1, 1])))
        )
        / 3
    )
    l_t = (
        -(
            torch.log(e(logits[0, 0]) / e(logits[0, 0]))
            + torch.log(e(logits[0, 1]) / (e(logits[0, 1]) + e(logits[1, 1])))
            + torch.log(e(logits[1, 2]) / e(logits[1, 2]))
        )
        / 3
    )
    torch.testing.assert_close(masked, l_i + l_t)
    assert masked < mp_nce_loss(logits, owner)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stable_at_small_temperature(dtype):
    gen = torch.Generator().manual_seed(1)
    text = torch.randn(40, 32, generator=gen).to(dtype).requires_grad_()
    tokens = torch.randn(8, 50, 32, generator=gen).to(dtype).requires_grad_()
    owner = torch.arange(8).repeat_interleave(5)
    logits, _ = vlcabs(text, tokens, 0.01)
    assert logits.abs().max() > 20  # exp() of these would overflow a naive float16/bf16 path
    loss = mp_nce_loss(logits, owner)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(text.grad).all() and torch.isfinite(tokens.grad).all()


def test_one_image_batch_has_zero_loss_and_finite_gradients():
    text, tokens, owner = random_case(2, batch=1, per_image=(3,))
    logits, _ = vlcabs(text, tokens, 0.1)
    loss = mp_nce_loss(logits, owner)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(text.grad).all()


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="expected text"):
        vlcabs(torch.randn(3, 4), torch.randn(2, 5, 6), 0.1)
    with pytest.raises(ValueError, match="similarity"):
        vlcabs(torch.randn(3, 4), torch.randn(2, 5, 4), 0.1, similarity="l2")
    with pytest.raises(ValueError, match="owner"):
        mp_nce_loss(torch.randn(2, 3), torch.tensor([0, 1]))
