"""mld.losses: ASL as the paper defines it, BCE, softmax CE and the unknown-label policies."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mld.losses import (AsymmetricLoss, BinaryCrossEntropy, SoftmaxCrossEntropy, create_loss,
                        labels_to_targets)


def asl_element(logit: float, target: int, gamma_neg: float, gamma_pos: float,
                clip: float) -> float:
    """The ASL of one entry, written from the paper's definition."""
    p = 1 / (1 + math.exp(-logit))
    if target == 1:
        return -((1 - p) ** gamma_pos) * math.log(p)
    shifted = max(p - clip, 0.0)  # probability margin: easy negatives drop out
    return -(shifted ** gamma_neg) * math.log(1 - shifted)


def test_asl_matches_its_definition_summed_over_batch_and_classes():
    logits = torch.tensor([[2.0, -1.0, 0.3], [-3.0, 0.0, 1.5]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    loss = AsymmetricLoss(gamma_neg=4, gamma_pos=1, clip=0.05)(logits, targets)
    expected = sum(asl_element(x, int(t), 4, 1, 0.05)
                   for x, t in zip(logits.flatten().tolist(), targets.flatten().tolist()))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_asl_without_focusing_or_clip_is_summed_bce():
    logits, targets = torch.randn(8, 5), (torch.rand(8, 5) < 0.3).float()
    asl = create_loss("asl", gamma_neg=0, gamma_pos=0, clip=0)(logits, targets)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    assert asl.item() == pytest.approx(bce.item(), rel=1e-5)
    assert BinaryCrossEntropy()(logits, targets).item() == pytest.approx(bce.item(), rel=1e-6)


def test_asl_defaults_are_the_papers_with_the_official_clip():
    """gamma_neg 4, gamma_pos 0 (ML-Decoder appendix C) and clip 0.05 (the official training code)."""
    loss = AsymmetricLoss()
    assert (loss.gamma_neg, loss.gamma_pos, loss.clip) == (4, 0, 0.05), "AsymmetricLoss's defaults"
    # The clip as behaviour: a negative at p = 0.04 is inside the margin and costs nothing; at
    # p = 0.3 it counts as p = 0.25: -(0.25 ** 4) * log(0.75).
    for p, expected in ((0.04, 0.0), (0.3, -(0.25 ** 4) * math.log(0.75))):
        logit = torch.tensor([[math.log(p / (1 - p))]], dtype=torch.float64)
        loss = create_loss("asl")(logit, torch.zeros(1, 1)).item()
        assert loss == pytest.approx(expected, rel=1e-6, abs=1e-12), f"ASL of a negative at p = {p} (clip 0.05)"
    # A positive with gamma_pos 0 is plain cross-entropy: -log(p).
    assert create_loss("asl")(torch.tensor([[0.0]]), torch.ones(1, 1)).item() == pytest.approx(math.log(2))


def test_asl_clip_discards_easy_negatives_entirely():
    logits = torch.tensor([[-5.0]], requires_grad=True)  # p = 0.0067 < clip
    loss = AsymmetricLoss(clip=0.05)(logits, torch.zeros(1, 1))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.item() == 0.0


def test_detached_focal_weight_changes_the_gradient_not_the_value():
    logits, targets = torch.randn(4, 6), (torch.rand(4, 6) < 0.5).float()
    values, grads = [], []
    for detach in (True, False):
        x = logits.clone().requires_grad_(True)
        loss = AsymmetricLoss(detach_focal_weight=detach)(x, targets)
        loss.backward()
        values.append(loss.item())
        grads.append(x.grad)
    assert values[0] == pytest.approx(values[1])
    assert not torch.allclose(grads[0], grads[1])
    # Detached: the gradient is that of the cross-entropy terms scaled by the constant weight.
    x = logits.clone().requires_grad_(True)
    prob_neg = (1 - torch.sigmoid(x) + 0.05).clamp(max=1)
    weight = torch.where(targets == 1, torch.ones_like(x), (1 - prob_neg) ** 4).detach()
    manual = -(weight * (targets * torch.log(torch.sigmoid(x))
                         + (1 - targets) * torch.log(prob_neg))).sum()
    manual.backward()
    torch.testing.assert_close(grads[0], x.grad)


@pytest.mark.parametrize("name", ["asl", "bce"])
def test_zero_weight_entries_do_not_count(name):
    logits, targets = torch.randn(6, 4), (torch.rand(6, 4) < 0.4).float()
    weights = torch.ones(6, 4)
    weights[:, 1] = 0
    loss = create_loss(name)
    keep = [0, 2, 3]
    assert loss(logits, targets, weights).item() == \
        pytest.approx(loss(logits[:, keep], targets[:, keep]).item(), rel=1e-6)


def test_losses_run_in_float32_under_half_precision_logits():
    logits = (torch.randn(4, 3) * 20).half()
    loss = create_loss("asl")(logits, torch.ones(4, 3))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_labels_to_targets_policies():
    labels = torch.tensor([[1, 0, -1], [-1, 1, 0]], dtype=torch.int8)
    targets, weights = labels_to_targets(labels, "ignore")
    assert targets.tolist() == [[1, 0, 0], [0, 1, 0]]
    assert weights.tolist() == [[1, 1, 0], [0, 1, 1]]
    targets, weights = labels_to_targets(labels, "negative", unknown_weight=0.1)
    assert targets.tolist() == [[1, 0, 0], [0, 1, 0]]
    torch.testing.assert_close(weights, torch.tensor([[1, 1, 0.1], [0.1, 1, 1]]))


@pytest.mark.parametrize("labels, kwargs, message", [
    (torch.tensor([[1, 2]]), {}, "1, 0 or -1"),
    (torch.tensor([[1, 0]]), {"unknown_labels": "drop"}, "unknown_labels must be"),
    (torch.tensor([[1, 0]]), {"unknown_labels": "negative"}, "needs unknown_weight"),
    (torch.tensor([[1, 0]]), {"unknown_weight": 0.5}, "only applies"),
])
def test_labels_to_targets_rejects_bad_input(labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        labels_to_targets(labels, **kwargs)


def test_softmax_cross_entropy_takes_indices_or_one_hot_rows():
    logits, classes = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    loss = SoftmaxCrossEntropy()
    expected = F.cross_entropy(logits, classes)
    assert loss(logits, classes).item() == pytest.approx(expected.item())
    one_hot = F.one_hot(classes, 4).to(torch.int8)  # as the prepared single-label format stores
    assert loss(logits, one_hot).item() == pytest.approx(expected.item())
    weights = torch.tensor([1.0, 0, 0, 0, 0])
    assert SoftmaxCrossEntropy(reduction="sum")(logits, classes, weights).item() == \
        pytest.approx(F.cross_entropy(logits[:1], classes[:1]).item())


def test_softmax_cross_entropy_rejects_mismatched_targets():
    with pytest.raises(ValueError, match="class indices"):
        SoftmaxCrossEntropy()(torch.randn(5, 4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="per image"):
        SoftmaxCrossEntropy()(torch.randn(5, 4), torch.zeros(5, dtype=torch.long),
                              torch.ones(5, 4))


def test_multilabel_losses_name_extend_targets_on_shape_mismatch():
    with pytest.raises(ValueError, match="extend_targets"):
        create_loss("asl")(torch.randn(2, 5), torch.zeros(2, 4))


def test_create_loss_errors_name_the_choices():
    with pytest.raises(ValueError, match="asl.*bce.*softmax_ce"):
        create_loss("focal")
    with pytest.raises(ValueError, match="bad options for loss 'bce'"):
        create_loss("bce", gamma_neg=4)
    with pytest.raises(ValueError, match="reduction"):
        create_loss("asl", reduction="max")
    with pytest.raises(ValueError, match="clip"):
        create_loss("asl", clip=1.5)
