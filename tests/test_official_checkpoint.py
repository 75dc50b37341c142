"""Official ML-Decoder checkpoints: the test writes state dicts in the official layout itself and checks
the loaded model against a reference computation of the official head written here with torch's
own functional ops (independent of mld's attention, decoder layer and group-FC code)."""
from __future__ import annotations

import pytest
import timm
import torch
from torch.nn import functional as F

from mld.models import create_model, load_official_checkpoint

NUM_CLASSES, NUM_GROUPS, GROUP_SIZE = 10, 4, 3  # g = ceil(10 / 4): the last group is partly empty
DIM, HEADS, FF, WORD_DIM = 16, 4, 24, 12


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def backbone() -> torch.nn.Module:
    return timm.create_model("test_resnet", num_classes=0).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64)


def official_head(channels: int, zero_shot: bool = False) -> dict[str, torch.Tensor]:
    """Random tensors under the official head's names and shapes (one decoder layer)."""
    def rand(*shape):
        return torch.randn(*shape) * 0.3

    layer = "decoder.layers.0."
    state = {
        "decoder.embed_standart.weight": rand(DIM, channels),
        "decoder.embed_standart.bias": rand(DIM),
        layer + "multihead_attn.in_proj_weight": rand(3 * DIM, DIM),
        layer + "multihead_attn.in_proj_bias": rand(3 * DIM),
        layer + "multihead_attn.out_proj.weight": rand(DIM, DIM),
        layer + "multihead_attn.out_proj.bias": rand(DIM),
        layer + "linear1.weight": rand(FF, DIM),
        layer + "linear1.bias": rand(FF),
        layer + "linear2.weight": rand(DIM, FF),
        layer + "linear2.bias": rand(DIM),
    }
    for norm in ("norm1", "norm2", "norm3"):
        state[f"{layer}{norm}.weight"] = 1 + rand(DIM)
        state[f"{layer}{norm}.bias"] = rand(DIM)
    if zero_shot:
        state["wordvec_proj.weight"] = rand(DIM, WORD_DIM)
        state["wordvec_proj.bias"] = rand(DIM)
        state["decoder.duplicate_pooling"] = rand(DIM, 1)
        state["decoder.duplicate_pooling_bias"] = rand(1)
    else:
        state["decoder.query_embed.weight"] = torch.randn(NUM_GROUPS, DIM)
        state["decoder.duplicate_pooling"] = rand(NUM_GROUPS, DIM, GROUP_SIZE)
        state["decoder.duplicate_pooling_bias"] = rand(NUM_CLASSES)
    return state


def reference_logits(head: dict[str, torch.Tensor], features: torch.Tensor, word_vectors=None) -> torch.Tensor:
    """The official head's inference, from its tensors: seq-first attention as nn.TransformerDecoder."""
    layer = "decoder.layers.0."
    memory = F.relu(F.linear(features.flatten(2).transpose(1, 2), head["decoder.embed_standart.weight"],
                             head["decoder.embed_standart.bias"])).transpose(0, 1)  # [L, B, D]
    if word_vectors is None:
        queries = head["decoder.query_embed.weight"]
    else:
        queries = F.relu(F.linear(word_vectors, head["wordvec_proj.weight"], head["wordvec_proj.bias"]))
    x = queries.unsqueeze(1).expand(-1, features.shape[0], -1)  # [K, B, D]

    def norm(name, value):
        return F.layer_norm(value, (DIM,), head[f"{layer}{name}.weight"], head[f"{layer}{name}.bias"])

    x = norm("norm1", x + x)  # eval: the query plus (dropout of) itself
    attended = F.multi_head_attention_forward(
        x, memory, memory, DIM, HEADS,
        head[layer + "multihead_attn.in_proj_weight"], head[layer + "multihead_attn.in_proj_bias"],
        None, None, False, 0.0,
        head[layer + "multihead_attn.out_proj.weight"], head[layer + "multihead_attn.out_proj.bias"],
        training=False, need_weights=False,
    )[0]
    x = norm("norm2", x + attended)
    hidden = F.relu(F.linear(x, head[layer + "linear1.weight"], head[layer + "linear1.bias"]))
    x = norm("norm3", x + F.linear(hidden, head[layer + "linear2.weight"], head[layer + "linear2.bias"]))
    x = x.transpose(0, 1)  # [B, K, D]
    pooling = head["decoder.duplicate_pooling"]
    if pooling.ndim == 2:  # zero-shot: one shared projection
        return (x @ pooling).flatten(1) + head["decoder.duplicate_pooling_bias"]
    out = torch.stack([x[:, k] @ pooling[k] for k in range(pooling.shape[0])], dim=1).flatten(1)
    return out[:, :NUM_CLASSES] + head["decoder.duplicate_pooling_bias"]


def official_checkpoint(backbone, prefix: str, zero_shot: bool = False) -> tuple[dict, dict]:
    head = official_head(backbone.num_features, zero_shot)
    model_state = dict(backbone.state_dict())
    model_state.update({prefix + key: value for key, value in head.items()})
    return {"model": model_state, "epoch": 40}, head


def plain_model(**options):
    options = {"num_groups": NUM_GROUPS, "group_order": "plain", "decoder_dim": DIM, "num_heads": HEADS,
               "ff_dim": FF, **options}
    # Inputs as the reference backbone sees them: the comparison is of the weights, not the normalisation.
    return create_model("test_resnet", "ml_decoder", NUM_CLASSES, normalize="none", **options)


@pytest.mark.parametrize("prefix", ["head.", "fc."])  # TResNet, ResNet layouts
def test_official_checkpoint_file_reproduces_the_official_logits(tmp_path, backbone, images, prefix):
    checkpoint, head = official_checkpoint(backbone, prefix)
    path = tmp_path / "official.pth"
    torch.save(checkpoint, path)
    model = load_official_checkpoint(plain_model(), path).eval()
    with torch.no_grad():
        expected = reference_logits(head, backbone.forward_features(images))
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-5)


def test_official_zero_shot_checkpoint_scores_any_class_set(backbone, images):
    checkpoint, head = official_checkpoint(backbone, "head.", zero_shot=True)
    seen = torch.randn(NUM_CLASSES, WORD_DIM)
    model = plain_model(num_groups=None, query_type="nlp", head_type="shared", word_vectors=seen)
    load_official_checkpoint(model, checkpoint).eval()
    unseen = torch.randn(6, WORD_DIM)
    with torch.no_grad():
        features = backbone.forward_features(images)
        torch.testing.assert_close(model(images), reference_logits(head, features, seen), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(images, class_embeddings=unseen), reference_logits(head, features, unseen),
                                   rtol=1e-5, atol=1e-5)


def test_mismatched_checkpoints_name_the_keys_and_shapes(backbone):
    checkpoint, _ = official_checkpoint(backbone, "head.")
    state = checkpoint["model"]
    state["head.decoder.duplicate_pooling"] = torch.zeros(NUM_GROUPS, DIM, 5)
    with pytest.raises(ValueError, match=r"head\.group_fc\.weight: file \(4, 16, 5\) vs model \(4, 16, 3\)"):
        load_official_checkpoint(plain_model(), state)
    del state["head.decoder.layers.0.linear1.bias"]
    state["head.decoder.extra_thing"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing \(1\): head\.layers\.0\.mlp\.0\.bias.*unexpected \(1\): head\.decoder\.extra_thing"):
        load_official_checkpoint(plain_model(), state)


def test_checkpoints_without_an_official_head_or_for_another_configuration_are_explained(backbone):
    with pytest.raises(ValueError, match=r"no ML-Decoder head: expected keys under 'head\.decoder\.'"):
        load_official_checkpoint(plain_model(), backbone.state_dict())
    checkpoint, _ = official_checkpoint(backbone, "fc.")
    with pytest.raises(ValueError, match="build the head with group_order='plain'"):
        load_official_checkpoint(plain_model(group_order="random"), checkpoint)
    with pytest.raises(ValueError, match="loads into an 'ml_decoder' head; the model has GAPHead"):
        load_official_checkpoint(create_model("test_resnet", "gap", NUM_CLASSES), checkpoint)


def test_official_checkpoints_are_read_without_running_pickled_code(tmp_path):
    path = tmp_path / "code.pth"
    torch.save({"model": {"head.decoder.x": torch.zeros(1)}, "args": object()}, path)
    with pytest.raises(ValueError, match="weights-only checkpoint"):
        load_official_checkpoint(plain_model(), path)
