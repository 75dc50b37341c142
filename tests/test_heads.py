"""Heads: shapes, group fully-connected, group layouts, zero-shot, gradients, augmentations, errors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mld.heads import create_head, extend_targets, list_heads
from mld.heads.attention import MultiHeadAttention
from mld.heads.group_fc import group_fc, group_fc_loop
from mld.heads.grouping import group_layout

CHANNELS, DIM, HEADS, FF = 12, 16, 4, 24
TINY = dict(decoder_dim=DIM, num_heads=HEADS, ff_dim=FF)
WORD_DIM = 10


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def feature_map(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, CHANNELS, 3, 4)


def decoder(num_classes: int, **options) -> nn.Module:
    return create_head("ml_decoder", CHANNELS, num_classes, **{**TINY, "dropout": 0.0, **options})


def word_vectors(num_classes: int) -> torch.Tensor:
    return torch.randn(num_classes, WORD_DIM)


def test_registry_lists_every_head_including_hsvlt():
    assert list_heads() == ["gap", "hsvlt", "ml_decoder", "transformer_decoder"]


@pytest.mark.parametrize("name", ["gap", "transformer_decoder", "ml_decoder"])
def test_each_head_gives_one_logit_per_class_from_maps_and_equal_tokens(name):
    head = create_head(name, CHANNELS, 7, **({} if name == "gap" else TINY)).eval()
    features = feature_map()
    logits = head(features)
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    torch.testing.assert_close(head(features.flatten(2).transpose(1, 2)), logits)


def test_gap_head_is_a_linear_layer_on_the_spatial_mean():
    head = create_head("gap", CHANNELS, 5)
    features = feature_map()
    torch.testing.assert_close(head(features), head.fc(features.mean(dim=(2, 3))))


QUERY_HEAD_TYPES = list(itertools.product(["learnable", "fixed_random", "nlp"], ["learnable", "shared", "nlp"]))


@pytest.mark.parametrize("query_type,head_type", QUERY_HEAD_TYPES)
@pytest.mark.parametrize("num_groups", [3, 12])
def test_ml_decoder_every_query_and_head_type(query_type, head_type, num_groups):
    uses_words = "nlp" in (query_type, head_type)
    head = decoder(12, num_groups=num_groups, query_type=query_type, head_type=head_type,
                   word_vectors=word_vectors(12) if uses_words else None).eval()
    assert head(feature_map()).shape == (3, 12)
    assert head.group_size == 12 // num_groups


def test_group_factor_is_ceil_n_over_k_and_output_is_cut_to_n():
    head = decoder(10, num_groups=4, group_order="plain")
    assert head.group_size == 3 and head.group_fc.weight.shape == (4, DIM, 3)
    assert head(feature_map()).shape == (3, 10)


def test_decoder_layers_expose_their_modules_and_only_the_baseline_has_self_attention():
    ml_layer = decoder(6, num_layers=2).layers
    td_layer = create_head("transformer_decoder", CHANNELS, 6, num_layers=3, **TINY).layers
    assert len(ml_layer) == 2 and len(td_layer) == 3
    assert all(layer.self_attn is None for layer in ml_layer)
    assert all(isinstance(layer.self_attn, MultiHeadAttention) for layer in td_layer)
    assert all(isinstance(layer.cross_attn, MultiHeadAttention) and isinstance(layer.mlp, nn.Sequential)
               for layer in [*ml_layer, *td_layer])


@pytest.mark.parametrize("shared", [False, True])
def test_vectorized_group_fc_equals_the_papers_loop_forward_and_backward(shared):
    queries = torch.randn(4, 5, 8, requires_grad=True)
    weight = torch.randn(8, 3, requires_grad=True) if shared else torch.randn(5, 8, 3, requires_grad=True)
    grad = torch.randn(4, 15)
    results = []
    for layer in (group_fc, group_fc_loop):
        queries.grad = weight.grad = None
        out = layer(queries, weight)
        out.backward(grad)
        results.append((out.detach(), queries.grad.clone(), weight.grad.clone()))
    for vectorized, looped in zip(*results):
        torch.testing.assert_close(vectorized, looped)
    # Slot j of group k is query k times column j of W_k.
    k, j = 3, 2
    w_k = weight if shared else weight[k]
    torch.testing.assert_close(results[0][0][:, k * 3 + j], queries[:, k] @ w_k[:, j])


def test_plain_layout_is_class_order_and_random_layout_is_a_seeded_partial_permutation():
    assert group_layout(10, 3, "plain", 0).class_slots.tolist() == list(range(10))
    random = group_layout(10, 3, "random", 0)
    slots = random.class_slots.tolist()
    assert len(set(slots)) == 10 and all(0 <= s < 12 for s in slots) and slots != list(range(10))
    assert random.num_groups == 4
    assert group_layout(10, 3, "random", 0).class_slots.tolist() == slots
    assert group_layout(10, 3, "random", 1).class_slots.tolist() != slots


def test_random_group_order_decodes_class_c_where_the_plain_order_decodes_its_slot():
    plain = decoder(12, num_groups=4, group_order="plain").eval()
    random = decoder(12, num_groups=4, group_order="random", group_seed=3).eval()
    random.load_state_dict(plain.state_dict())
    features = feature_map()
    slots = group_layout(12, 3, "random", 3).class_slots
    torch.testing.assert_close(random(features), plain(features)[:, slots])
    assert not torch.allclose(random(features), plain(features))


SEEN, UNSEEN = 8, 5


@pytest.mark.parametrize("query_type,head_type,num_groups", [
    ("nlp", "shared", SEEN),  # the paper's zero-shot baseline: full decoding, shared projection
    ("nlp", "nlp", 4),  # zero-shot group decoding (appendix B)
    ("learnable", "nlp", 4),
    ("nlp", "learnable", 4),
])
def test_a_head_trained_on_seen_classes_scores_unseen_and_all_classes(query_type, head_type, num_groups):
    seen, unseen = word_vectors(SEEN), word_vectors(UNSEEN)
    head = decoder(SEEN, num_groups=num_groups, query_type=query_type, head_type=head_type, word_vectors=seen).eval()
    features = feature_map()
    assert head(features, class_embeddings=unseen).shape == (3, UNSEEN)
    torch.testing.assert_close(head(features, class_embeddings=seen), head(features))
    if head_type != "learnable" or query_type != "learnable":
        changed = unseen.clone()
        changed[0] += 1.0
        assert not torch.allclose(head(features, class_embeddings=changed)[:, 0],
                                  head(features, class_embeddings=unseen)[:, 0])


def test_full_decoding_zero_shot_scores_each_class_from_its_own_word_vector():
    seen, unseen = word_vectors(SEEN), word_vectors(UNSEEN)
    head = decoder(SEEN, query_type="nlp", head_type="shared", word_vectors=seen, group_order="plain").eval()
    features = feature_map()
    generalized = head(features, class_embeddings=torch.cat([seen, unseen]))
    assert generalized.shape == (3, SEEN + UNSEEN)
    torch.testing.assert_close(generalized[:, :SEEN], head(features))
    torch.testing.assert_close(generalized[:, SEEN:], head(features, class_embeddings=unseen))


def test_group_zero_shot_scores_seen_plus_unseen_with_more_groups():
    head = decoder(SEEN, num_groups=4, query_type="nlp", head_type="nlp", word_vectors=word_vectors(SEEN)).eval()
    all_classes = torch.cat([head.word_vectors, word_vectors(UNSEEN)])
    assert head(feature_map(), class_embeddings=all_classes).shape == (3, SEEN + UNSEEN)


@pytest.mark.parametrize("seed", [0, 7])
def test_group_zero_shot_keeps_the_training_groups_and_groups_unseen_classes_alone(seed):
    """The GZSL pass (seen classes first): seen logits as in training, unseen ones as scored alone."""
    seen, unseen = word_vectors(SEEN), word_vectors(UNSEEN)
    head = decoder(SEEN, num_groups=4, query_type="nlp", head_type="nlp", word_vectors=seen, group_seed=seed).eval()
    features = feature_map()
    generalized = head(features, class_embeddings=torch.cat([seen, unseen]))
    torch.testing.assert_close(generalized[:, :SEEN], head(features))
    torch.testing.assert_close(generalized[:, SEEN:], head(features, class_embeddings=unseen))
    # Laid out afresh (what one pass over the class set in dataset order did), the groups mix.
    mixed = head(features, class_embeddings=torch.cat([unseen, seen]))
    assert not torch.allclose(mixed[:, UNSEEN:], head(features), atol=1e-4)


def test_the_training_layout_follows_group_seed_and_is_not_saved():
    layouts = [decoder(SEEN, num_groups=4, group_seed=seed).class_slots for seed in (0, 1)]
    assert not torch.equal(*layouts)
    assert torch.equal(decoder(SEEN, num_groups=4, group_seed=1).class_slots, layouts[1])
    assert "class_slots" not in decoder(SEEN, num_groups=4).state_dict()  # group_seed re-creates it


def test_word_vectors_may_come_from_a_npy_file(tmp_path):
    vectors = word_vectors(6)
    path = tmp_path / "word_vectors.npy"
    np.save(path, vectors.numpy())
    head = decoder(6, query_type="nlp", word_vectors=str(path))
    torch.testing.assert_close(head.word_vectors, vectors)


@pytest.mark.parametrize("query_type,head_type", [("nlp", "learnable"), ("learnable", "nlp")])
def test_learnable_parts_score_a_larger_class_set_by_reusing_trained_rows(query_type, head_type):
    """Table 8's learnable rows: more classes than trained reuse the trained rows cyclically, so
    the trained classes keep their scores and the extra classes get scores from reused rows."""
    seen = word_vectors(SEEN)
    head = decoder(SEEN, num_groups=4, query_type=query_type, head_type=head_type, word_vectors=seen,
                   group_order="plain").eval()
    features = feature_map()
    group_size = SEEN // 4
    larger = head(features, class_embeddings=torch.cat([seen, word_vectors(3)]))
    assert larger.shape == (3, SEEN + 3)
    torch.testing.assert_close(larger[:, :SEEN], head(features))
    # The extra group reuses group 0's trained rows: given group 0's word vectors it scores as group 0.
    repeated = head(features, class_embeddings=torch.cat([seen, seen[:group_size]]))
    torch.testing.assert_close(repeated[:, SEEN:], repeated[:, :group_size])


@pytest.mark.parametrize("query_type,head_type", QUERY_HEAD_TYPES)
def test_gradients_reach_every_parameter_and_never_the_fixed_inputs(query_type, head_type):
    uses_words = "nlp" in (query_type, head_type)
    head = decoder(12, num_groups=4, query_type=query_type, head_type=head_type,
                   word_vectors=word_vectors(12) if uses_words else None).train()
    head(feature_map()).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    names = dict(head.named_parameters())
    assert ("queries.weight" in names) == (query_type == "learnable")
    buffers = dict(head.named_buffers())
    if query_type == "fixed_random":
        assert "queries.weight" in buffers and not buffers["queries.weight"].requires_grad
    if uses_words:
        assert not buffers["word_vectors"].requires_grad


TABLE8 = [("nlp", "learnable"), ("nlp", "shared"), ("learnable", "nlp"), ("nlp", "nlp")]


@pytest.mark.parametrize("query_type,head_type", TABLE8)
@pytest.mark.parametrize("num_groups", [SEEN, 4])
def test_random_queries_add_positive_columns_in_training_only(query_type, head_type, num_groups):
    head = decoder(SEEN, num_groups=num_groups, query_type=query_type, head_type=head_type,
                   word_vectors=word_vectors(SEEN), random_queries=3)
    features = feature_map()
    training_logits = head.train()(features)
    assert training_logits.shape == (3, SEEN + 3)
    targets = torch.zeros(3, SEEN, dtype=torch.int8)
    extended = extend_targets(training_logits, targets)
    assert extended.dtype == torch.int8 and extended[:, SEEN:].eq(1).all() and extended[:, :SEEN].eq(0).all()
    eval_logits = head.eval()(features)
    assert eval_logits.shape == (3, SEEN)
    assert extend_targets(eval_logits, targets) is targets
    # Random queries sit in groups of their own: the class columns are those of the plain head.
    torch.testing.assert_close(training_logits[:, :SEEN], eval_logits)
    # ... and the random columns change from batch to batch.
    assert not torch.allclose(head.train()(features)[:, SEEN:], training_logits[:, SEEN:])


def test_query_noise_changes_training_outputs_only():
    head = decoder(6, num_groups=3, query_type="learnable", query_noise=0.5)
    features = feature_map()
    head.train()
    assert not torch.allclose(head(features), head(features))
    head.eval()
    torch.testing.assert_close(head(features), head(features))
    quiet = decoder(6, num_groups=3, query_type="learnable")
    quiet.load_state_dict(head.state_dict())
    torch.testing.assert_close(quiet.train()(features), head(features))


def test_extend_targets_rejects_narrower_logits():
    with pytest.raises(ValueError, match="at least as many columns"):
        extend_targets(torch.zeros(2, 3), torch.zeros(2, 4))


def test_attention_matches_torch_multihead_attention():
    ours = MultiHeadAttention(DIM, HEADS).eval()
    reference = nn.MultiheadAttention(DIM, HEADS, batch_first=True).eval()
    reference.load_state_dict(ours.state_dict())
    query, memory = torch.randn(2, 5, DIM), torch.randn(2, 7, DIM)
    torch.testing.assert_close(ours(query, memory), reference(query, memory, memory)[0])


def count_macs(head: nn.Module, features: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        head(features)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("batch", [1, 2])
def test_flop_counter_sees_every_matmul_in_inference(batch):
    num_classes, num_groups, tokens = 12, 4, 12
    group_size = num_classes // num_groups
    features = feature_map(batch)
    ml = decoder(num_classes, num_groups=num_groups).eval()
    expected_ml = batch * (
        tokens * CHANNELS * DIM  # input projection
        + num_groups * DIM * DIM + 2 * tokens * DIM * DIM + num_groups * DIM * DIM  # q, k/v, out projections
        + 2 * num_groups * tokens * DIM  # attention scores and weighted sum
        + 2 * num_groups * DIM * FF  # feed-forward
        + num_groups * DIM * group_size  # group fully-connected
    )
    assert count_macs(ml, features) == expected_ml
    td = create_head("transformer_decoder", CHANNELS, num_classes, **TINY).eval()
    full = decoder(num_classes, group_order="plain").eval()
    self_attention = batch * (4 * num_classes * DIM * DIM + 2 * num_classes * num_classes * DIM)
    assert count_macs(td, features) - count_macs(full, features) == self_attention


@pytest.mark.parametrize("options,message", [
    (dict(num_groups=13), "num_groups=13 must be an int between 1 and 12"),
    (dict(num_groups=0), "num_groups=0"),
    (dict(query_type="clip"), "unknown query_type 'clip'; valid choices: learnable, fixed_random, nlp"),
    (dict(head_type="mlp"), "unknown head_type 'mlp'; valid choices: learnable, shared, nlp"),
    (dict(group_order="sorted"), "unknown group_order 'sorted'; valid choices: random, plain"),
    (dict(query_type="nlp"), r"pass word_vectors=\[12, d_w\]"),
    (dict(query_type="nlp", word_vectors=torch.randn(11, 5)), r"shape \(11, 5\), expected \(12, 5\)"),
    (dict(query_type="nlp", word_vectors=torch.randn(12)), "2-d"),
    (dict(word_vectors=torch.randn(12, 5)), "word_vectors are used only by"),
    (dict(random_queries=-2), "random_queries=-2 must be an int >= 0"),
    (dict(query_noise=-1.0), "query_noise=-1.0 must be a number >= 0"),
    (dict(decoder_dim=18, num_heads=4), "decoder_dim=18 must be divisible by num_heads=4"),
])
def test_bad_head_options_are_explained(options, message):
    with pytest.raises(ValueError, match=message):
        decoder(12, **options)


def test_unknown_head_and_option_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid heads: gap, hsvlt, ml_decoder, transformer_decoder"):
        create_head("mlp", CHANNELS, 5)
    with pytest.raises(ValueError, match="head 'gap' has no option.*'num_groups'.*valid options: none"):
        create_head("gap", CHANNELS, 5, num_groups=2)


def test_bad_features_and_class_embeddings_are_explained():
    head = decoder(6, query_type="nlp", head_type="shared", word_vectors=word_vectors(6))
    with pytest.raises(ValueError, match=rf"expected a map \[B, {CHANNELS}, H, W\] or tokens \[B, L, {CHANNELS}\]"):
        head(torch.randn(2, CHANNELS + 1, 3, 3))
    with pytest.raises(ValueError, match=rf"class_embeddings has shape \(4, 3\), expected \(4, {WORD_DIM}\)"):
        head(feature_map(), class_embeddings=torch.randn(4, 3))
    with pytest.raises(ValueError, match="built without word vectors"):
        create_head("gap", CHANNELS, 6)(feature_map(), class_embeddings=word_vectors(2))
