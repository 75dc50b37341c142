"""HSVLT head: shapes, gradients, scales, class-set handling, cost visibility and clear errors.

Runs on timm's 4-stage `test_convnext` (widths 24/32/48/64) with 64 px inputs.
"""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from mld.heads.hsvlt import HSVLTHead
from mld.models import create_model
from mld.heads.hsvlt_blocks import CrossAttention
from mld.heads.hsvlt_hamburger import NMFHamburger

NUM_CLASSES = 5
WORD_DIM = 12


@pytest.fixture(scope="module")
def backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_convnext", features_only=True).eval()


@pytest.fixture(scope="module")
def channels(backbone) -> list[int]:
    return backbone.feature_info.channels()


@pytest.fixture(scope="module")
def features(backbone) -> list[torch.Tensor]:
    torch.manual_seed(1)
    with torch.no_grad():
        return backbone(torch.rand(2, 3, 64, 64))


@pytest.fixture(scope="module")
def word_vectors() -> torch.Tensor:
    torch.manual_seed(2)
    return torch.randn(NUM_CLASSES, WORD_DIM)


def make_head(channels, word_vectors, num_classes=None, **options) -> HSVLTHead:
    torch.manual_seed(3)
    num_classes = len(word_vectors) if num_classes is None else num_classes
    return HSVLTHead(channels, num_classes, word_vectors=word_vectors, **options)


def flops(module, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    return counter.get_total_flops()


@pytest.mark.parametrize("interaction", ["ivla", "cross_attention"])
@pytest.mark.parametrize("hamburger", [True, False])
def test_variants_give_one_finite_logit_per_class(channels, features, word_vectors, interaction, hamburger):
    head = make_head(channels, word_vectors, interaction=interaction, hamburger=hamburger).eval()
    logits = head(features)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()


def test_head_accepts_tokens_as_well_as_maps(channels, features, word_vectors):
    head = make_head(channels, word_vectors).eval()
    tokens = [feature.flatten(2).transpose(1, 2) for feature in features]
    torch.testing.assert_close(head(tokens), head(features))


@pytest.mark.parametrize(
    "options",
    [
        {"num_blocks": 2, "hamburger": True},
        {"num_blocks": [1, 3, 1, 2], "embed_dim": 16, "num_heads": 4},
        {"interaction": "cross_attention", "num_blocks": 2},
        {"num_scales": 1, "num_blocks": 2, "scoring": "shared"},
    ],
)
def test_every_parameter_learns_and_word_vectors_stay_frozen(channels, features, word_vectors, options):
    head = make_head(channels, word_vectors, **options).train()
    head(features).square().mean().backward()

    without_gradient = [
        name for name, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert without_gradient == []
    assert "word_vectors" in dict(head.named_buffers())
    assert "word_vectors" in head.state_dict()
    assert all(p is not head.word_vectors for p in head.parameters())
    assert not head.word_vectors.requires_grad


@pytest.mark.parametrize("num_scales", [1, 2, 3, 4])
def test_aggregation_uses_exactly_the_last_n_stages(channels, features, word_vectors, num_scales):
    head = make_head(channels, word_vectors, num_scales=num_scales).eval()
    assert head.class_weight.shape == (NUM_CLASSES, sum(channels[-num_scales:]))
    assert len(head.stages) == num_scales

    reference = head(features)
    for stage in range(len(features)):
        changed = list(features)
        changed[stage] = features[stage] + torch.randn_like(features[stage])
        moved = not torch.allclose(head(changed), reference)
        assert moved == (stage >= len(features) - num_scales), f"stage {stage}"


def test_more_blocks_and_scales_cost_more_and_the_cost_is_counted(channels, features, word_vectors):
    base = flops(make_head(channels, word_vectors, num_blocks=1, num_scales=2).eval(), features)
    deeper = flops(make_head(channels, word_vectors, num_blocks=2, num_scales=2).eval(), features)
    wider = flops(make_head(channels, word_vectors, num_blocks=1, num_scales=4).eval(), features)
    assert 0 < base < deeper
    assert base < wider


def test_cross_attention_multiply_accumulates_are_all_visible_to_the_flop_counter():
    batch, queries, keys, dim = 2, 7, 30, 16
    attention = CrossAttention(dim, num_heads=4, dropout=0.0)
    counted = flops(attention, torch.randn(batch, queries, dim), torch.randn(batch, keys, dim))
    projections = batch * (2 * queries + 2 * keys) * dim * dim
    scores_and_mixing = 2 * batch * queries * keys * dim
    assert counted == 2 * (projections + scores_and_mixing)  # FlopCounterMode counts 2 per MAC


def test_head_cost_grows_with_classes_but_leaves_features_untouched(channels, features, word_vectors):
    few = make_head(channels, word_vectors).eval()
    many_vectors = torch.randn(40, WORD_DIM)
    many = make_head(channels, many_vectors).eval()
    snapshot = [feature.clone() for feature in features]
    assert flops(many, features) > flops(few, features)
    for before, after in zip(snapshot, features):
        assert torch.equal(before, after)


def test_backbone_path_does_not_depend_on_the_class_count(word_vectors):
    images = torch.rand(1, 3, 64, 64)
    built = []
    for vectors in (word_vectors, torch.randn(40, WORD_DIM)):
        torch.manual_seed(0)
        model = create_model("test_convnext", "hsvlt", len(vectors), word_vectors=vectors).eval()
        built.append(model)
    small, large = built
    with torch.no_grad():
        small_features, large_features = small.forward_features(images), large.forward_features(images)
        for small_map, large_map in zip(small_features, large_features, strict=True):
            torch.testing.assert_close(small_map, large_map)
        assert flops(small.forward_features, images) == flops(large.forward_features, images)
        assert small(images).shape == (1, NUM_CLASSES) and large(images).shape == (1, 40)
    backbone_params = [sum(p.numel() for p in m.backbone.parameters()) for m in built]
    assert backbone_params[0] == backbone_params[1]


def test_class_embeddings_select_the_scored_class_set(channels, features, word_vectors):
    # One block per stage and no Hamburger: every label token is scored independently of the others,
    # so scoring a subset must reproduce those columns.
    head = make_head(channels, word_vectors, scoring="shared", hamburger=False).eval()
    assert head.supports_class_embeddings
    full = head(features)
    subset = head(features, class_embeddings=word_vectors[[3, 0]].numpy())
    torch.testing.assert_close(subset, full[:, [3, 0]])
    assert head(features, class_embeddings=torch.randn(9, WORD_DIM)).shape == (2, 9)


def test_per_class_scoring_refuses_a_call_time_class_set(channels, features, word_vectors):
    head = make_head(channels, word_vectors).eval()
    assert not head.supports_class_embeddings
    with pytest.raises(ValueError, match="scoring='shared'"):
        head(features, class_embeddings=word_vectors)


def test_word_vectors_load_from_the_prepared_datasets_npy_file(tmp_path, channels, features, word_vectors):
    path = tmp_path / "word_vectors.npy"
    np.save(path, word_vectors.numpy())
    from_file = make_head(channels, str(path), num_classes=NUM_CLASSES).eval()
    torch.testing.assert_close(from_file(features), make_head(channels, word_vectors).eval()(features))


def test_state_dict_restores_identical_predictions(channels, features, word_vectors):
    head = make_head(channels, word_vectors, num_blocks=2).eval()
    torch.manual_seed(99)  # a different draw of every initial weight and of the NMF bases
    restored = HSVLTHead(channels, NUM_CLASSES, word_vectors=torch.zeros_like(word_vectors), num_blocks=2)
    restored.load_state_dict(head.state_dict())
    torch.testing.assert_close(restored.eval()(features), head(features))
    torch.testing.assert_close(head(features), head(features))  # evaluation is deterministic


def test_nmf_iterations_reduce_the_reconstruction_error():
    torch.manual_seed(4)
    matrix = torch.rand(2, 16, 3) @ torch.rand(2, 3, 10)  # non-negative, rank 3
    errors = []
    for steps in (1, 30):
        torch.manual_seed(5)  # same initial bases for both
        reconstruction = NMFHamburger(16, rank=3, steps=steps)._low_rank(matrix)
        errors.append(((reconstruction - matrix).norm() / matrix.norm()).item())
    assert errors[1] < errors[0] < 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"word_vectors": None}, "needs word_vectors"),
        (
            {"word_vectors": torch.randn(NUM_CLASSES + 1, WORD_DIM)},
            r"word_vectors has shape \(6, 12\), expected \(5, 12\)",
        ),
        ({"word_vectors": torch.randn(NUM_CLASSES)}, "word_vectors must be a 2-d"),
        ({"word_vectors": [["a"] * WORD_DIM] * NUM_CLASSES}, "real numbers"),
        ({"word_vectors": torch.full((NUM_CLASSES, WORD_DIM), float("nan"))}, "NaN"),
        ({"num_scales": 0}, "num_scales=0 must be between 1 and 4"),
        ({"num_scales": 5}, "num_scales=5 must be between 1 and 4"),
        ({"interaction": "self_attention"}, "unknown interaction 'self_attention'"),
        ({"scoring": "mean"}, "unknown scoring 'mean'"),
        ({"num_heads": 5}, "num_heads=5 does not divide"),
        ({"num_blocks": [1, 2]}, "num_blocks=.* list of 4"),
        ({"num_blocks": 0}, "num_blocks=0"),
        ({"embed_dim": 0}, "embed_dim=0"),
    ],
)
def test_bad_options_fail_with_a_clear_message(channels, word_vectors, options, message):
    options = {"word_vectors": word_vectors, **options}
    with pytest.raises(ValueError, match=message):
        HSVLTHead(channels, NUM_CLASSES, **options)


def test_single_channel_count_is_rejected(word_vectors):
    with pytest.raises(ValueError, match="features_only=True"):
        HSVLTHead(64, NUM_CLASSES, word_vectors=word_vectors)


def test_bad_inputs_fail_with_a_clear_message(channels, features, word_vectors):
    head = make_head(channels, word_vectors)
    with pytest.raises(ValueError, match="list of 4 stage features"):
        head(features[-1])
    with pytest.raises(ValueError, match="got 3 tensors"):
        head(features[1:])
    with pytest.raises(ValueError, match=r"stage 2: features of shape \(2, 64, 2, 2\)"):
        head([features[0], features[1], features[3], features[3]])
    shared = make_head(channels, word_vectors, scoring="shared")
    with pytest.raises(ValueError, match=r"class_embeddings has shape \(5, 13\), expected \(5, 12\)"):
        shared(features, class_embeddings=torch.randn(NUM_CLASSES, WORD_DIM + 1))
