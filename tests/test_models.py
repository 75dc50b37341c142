"""create_model: timm backbones with every head, local backbone weights, multiscale backbones, errors."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import timm
import torch

import mld
import mld.heads
from mld.heads import Head
from mld.models import MLDModel, create_backbone, create_model, input_normalization

TINY = dict(decoder_dim=16, num_heads=4, ff_dim=24)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64)


@pytest.mark.parametrize("backbone,feature_ndim", [("test_resnet", 4), ("test_vit", 3), ("test_convnext", 4)])
@pytest.mark.parametrize("head", ["gap", "transformer_decoder", "ml_decoder"])
def test_any_backbone_with_any_head(backbone, feature_ndim, head, images):
    model = mld.create_model(backbone, head, 5, head_options=None if head == "gap" else TINY).eval()
    assert isinstance(model, MLDModel) and isinstance(model.head, Head)
    features = model.forward_features(images)
    assert features.ndim == feature_ndim
    logits = model(images)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(logits, model.forward_head(features))


def test_head_options_come_as_a_dict_or_as_keywords(images):
    by_dict = create_model("test_resnet", "ml_decoder", 6, num_groups=2, head_options=TINY)
    by_keyword = create_model("test_resnet", "ml_decoder", 6, num_groups=2, **TINY)
    assert by_dict.head.num_groups == by_keyword.head.num_groups == 2
    assert by_dict.head.layers[0].mlp[0].out_features == by_keyword.head.layers[0].mlp[0].out_features == 24


def test_backbone_options_reach_timm():
    model = create_model("test_resnet", "gap", 3, backbone_options={"in_chans": 3, "drop_rate": 0.3})
    assert model.backbone.drop_rate == 0.3


def test_zero_shot_class_set_is_chosen_at_call_time(images):
    seen = torch.randn(4, 6)
    model = create_model("test_resnet", "ml_decoder", 4, query_type="nlp", head_type="shared", word_vectors=seen, **TINY)
    assert model.eval()(images, class_embeddings=torch.randn(3, 6)).shape == (2, 3)


def save_backbone(tmp_path, name: str, state: object) -> str:
    path = tmp_path / name
    torch.save(state, path)
    return str(path)


def test_local_backbone_weights_load_from_a_backbone_model_or_checkpoint_file(tmp_path, images):
    source = create_model("test_resnet", "gap", 3).eval()
    expected = source.forward_features(images)
    files = [
        save_backbone(tmp_path, "backbone.pt", source.backbone.state_dict()),
        save_backbone(tmp_path, "model.pt", source.state_dict()),  # an MLDModel: its backbone.* entries
        save_backbone(tmp_path, "checkpoint.pt", {"model": source.state_dict(), "epoch": 3}),
    ]
    for path in files:
        model = create_model("test_resnet", "ml_decoder", 3, backbone_weights=path, **TINY).eval()
        torch.testing.assert_close(model.forward_features(images), expected)
    fresh = create_model("test_resnet", "gap", 3).eval()
    assert not torch.allclose(fresh.forward_features(images), expected)


def test_backbone_weights_may_carry_a_classifier(tmp_path, images):
    source = timm.create_model("test_resnet", num_classes=10).eval()
    path = save_backbone(tmp_path, "with_fc.pt", source.state_dict())
    model = create_model("test_resnet", "gap", 3, backbone_weights=path, normalize="none").eval()
    torch.testing.assert_close(model.forward_features(images), source.forward_features(images))


def test_mismatched_backbone_weights_name_the_keys_and_shapes(tmp_path):
    other = save_backbone(tmp_path, "convnext.pt", timm.create_model("test_convnext", num_classes=0).state_dict())
    with pytest.raises(ValueError, match=r"convnext\.pt does not match the model: missing \(\d+\): .*conv1"):
        create_model("test_resnet", "gap", 3, backbone_weights=other)
    state = create_model("test_resnet", "gap", 3).backbone.state_dict()
    expected_shape = tuple(state["conv1.0.weight"].shape)
    state["conv1.0.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=rf"shape mismatch \(1\): conv1\.0\.weight: file \(1,\) vs model {re.escape(str(expected_shape))}"):
        create_model("test_resnet", "gap", 3, backbone_weights=save_backbone(tmp_path, "bad.pt", state))


class _Payload:
    """Unpickling this would run code; a weights-only load must refuse it."""

    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {}


def test_backbone_weights_never_run_pickled_code(tmp_path):
    path = tmp_path / "payload.pt"
    path.write_bytes(pickle.dumps(_Payload(), protocol=2))
    with pytest.raises(ValueError, match="weights-only"):
        create_model("test_resnet", "gap", 3, backbone_weights=str(path))
    assert not _Payload.ran


def test_missing_weights_file_and_conflicting_sources_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        create_model("test_resnet", "gap", 3, backbone_weights=str(tmp_path / "nowhere.pt"))
    with pytest.raises(ValueError, match="either pretrained=True .* or backbone_weights"):
        create_model("test_resnet", "gap", 3, pretrained=True, backbone_weights=str(tmp_path / "x.pt"))


def test_multiscale_backbone_gives_every_stage_and_takes_local_weights(tmp_path, images):
    source = timm.create_model("test_resnet", num_classes=0).eval()
    path = save_backbone(tmp_path, "backbone.pt", source.state_dict())
    backbone = create_backbone("test_resnet", multiscale=True, weights=path).eval()
    stages = backbone(images)
    assert [stage.shape[1] for stage in stages] == backbone.feature_info.channels()
    torch.testing.assert_close(stages[-1], source.forward_features(images))


class StageProbeHead(Head):
    """A minimal multiscale head: the mean of each stage's pooled features, one linear layer."""

    feature_kind = "multiscale"

    def __init__(self, in_channels, num_classes):
        super().__init__(in_channels, num_classes)
        self.fc = torch.nn.Linear(sum(self.in_channels), num_classes)

    def decode(self, tokens, class_embeddings):
        return self.fc(torch.cat([stage.mean(dim=1) for stage in tokens], dim=1))


def test_multiscale_heads_get_a_features_only_backbone_and_stage_channels(monkeypatch, images):
    monkeypatch.setitem(mld.heads._REGISTRY, "stage_probe", f"{__name__}:StageProbeHead")
    model = create_model("test_convnext", "stage_probe", 4).eval()
    assert model.head.in_channels == timm.create_model("test_convnext", features_only=True).feature_info.channels()
    features = model.forward_features(images)
    assert isinstance(features, list) and len(features) == len(model.head.in_channels)
    assert model(images).shape == (2, 4)


def test_unknown_names_list_the_valid_choices():
    with pytest.raises(ValueError, match="unknown timm backbone 'test_resnett'; close matches: test_resnet"):
        create_model("test_resnett", "gap", 3)
    with pytest.raises(ValueError, match="unknown head 'gapp'; valid heads: gap, hsvlt, ml_decoder, transformer_decoder"):
        create_model("test_resnet", "gapp", 3)
    with pytest.raises(ValueError, match="head 'gap' has no option.*'num_groups'"):
        create_model("test_resnet", "gap", 3, num_groups=2)
    with pytest.raises(ValueError, match="decoder_dim given both in head_options and as keywords"):
        create_model("test_resnet", "ml_decoder", 3, head_options={"decoder_dim": 8}, decoder_dim=8)
    with pytest.raises(ValueError, match="backbone_options may not set num_classes"):
        create_model("test_resnet", "gap", 3, backbone_options={"num_classes": 5})


def test_images_of_the_wrong_shape_are_explained():
    model = create_model("test_resnet", "gap", 3)
    with pytest.raises(ValueError, match=r"images must be \[B, 3, H, W\], got shape \(3, 64, 64\)"):
        model(torch.rand(3, 64, 64))


def test_inputs_are_normalised_as_the_backbones_weights_expect(images):
    """normalize: timm reads the weights' pretrained_cfg (ImageNet's mean/std for resnet101.a1h_in1k,
    0.5 / 0.5 for test_resnet, none for the TResNets); none and explicit values are honoured; the
    backbone sees (x - mean) / std."""
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    halves = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert input_normalization("resnet101.a1h_in1k", "timm") == imagenet
    assert input_normalization("test_resnet", "timm") == halves
    assert input_normalization("tresnet_m.miil_in21k", "timm") is None  # mean 0, std 1
    assert input_normalization("test_resnet", "none") is None
    assert input_normalization("test_resnet", {"mean": [0.5, 0.5, 0.5], "std": [2, 2, 2]}) == ((0.5,) * 3, (2.0,) * 3)
    with pytest.raises(ValueError, match=r"mean and std need 3 values each"):
        input_normalization("test_resnet", {"mean": [0.5], "std": [1.0]})
    with pytest.raises(ValueError, match=r"expected timm, none or"):
        input_normalization("test_resnet", "imagenet")
    model = create_model("test_resnet", "gap", 3, normalize="timm").eval()
    plain = create_model("test_resnet", "gap", 3, normalize="none").eval()
    plain.load_state_dict(model.state_dict())
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in halves)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(images), plain.forward_features((images - mean) / std))
    # The statistics are not part of the weights: a state dict keeps the backbone's layout.
    assert not any("input_" in key for key in model.state_dict())


def test_the_paper_configs_normalisation_is_what_timm_says_the_weights_expect():
    """Each backbone of config/paper.yaml states the mean/std of timm's pretrained_cfg for its name."""
    from mld.experiments import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "paper.yaml")
    for role, spec in config["backbones"].items():
        if isinstance(spec, dict):
            assert input_normalization(spec["name"], spec["normalize"]) == input_normalization(spec["name"], "timm"), role
