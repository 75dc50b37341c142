"""A timm backbone plus an `mld` head: `create_model`, `MLDModel`, `load_official_checkpoint`.

Every checkpoint is read with `torch.load(..., weights_only=True)`, so loading never runs
pickled code, and every mismatch is reported with the keys and shapes involved.
"""
from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from os import PathLike
from typing import Any

import timm
import torch
from torch import nn

from mld.heads import Head, check_head_options, create_head, head_class
from mld.heads.official import official_head_state_dict

StateDict = dict[str, torch.Tensor]
# create_model sets these timm arguments itself.
_RESERVED_BACKBONE_OPTIONS = ("pretrained", "features_only", "num_classes", "pretrained_cfg_overlay")
# Names timm resolves on a weights hub or directory rather than in its registry.
_HUB_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


# `normalize` values: the backbone's timm pretrained_cfg, or none (inputs stay in [0, 1]).
NORMALIZE_TIMM, NORMALIZE_NONE = "timm", "none"
Normalization = tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std) per channel


def input_normalization(backbone: str, normalize: str | Mapping[str, Any] | None) -> Normalization | None:
    """The (mean, std) a backbone's weights expect of inputs in [0, 1], or None for none.

    `normalize` is "timm" (the mean and std of timm's pretrained_cfg for the backbone name, e.g.
    ImageNet's for `resnet101.a1h_in1k`, none for the TResNets), "none" / None, or {mean, std}.
    """
    if normalize in (None, NORMALIZE_NONE):
        return None
    if normalize == NORMALIZE_TIMM:
        base = backbone.split(":", 1)[-1]
        config = timm.get_pretrained_cfg(base) if timm.is_model(base) else None
        if config is None:
            raise ValueError(f"normalize: timm, but timm has no pretrained_cfg for {backbone!r}; "
                             "give normalize: {mean: [r, g, b], std: [r, g, b]} or normalize: none")
        mean, std = tuple(config.mean), tuple(config.std)
    elif isinstance(normalize, Mapping) and set(normalize) == {"mean", "std"}:
        mean, std = tuple(normalize["mean"]), tuple(normalize["std"])
    else:
        raise ValueError(f"normalize = {normalize!r}: expected timm, none or {{mean: [r, g, b], std: [r, g, b]}}")
    if len(mean) != 3 or len(std) != 3 or any(float(value) <= 0 for value in std):
        raise ValueError(f"normalize: mean and std need 3 values each, std positive; got mean {mean}, std {std}")
    if all(float(m) == 0.0 for m in mean) and all(float(s) == 1.0 for s in std):
        return None
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)  # type: ignore[return-value]


class MLDModel(nn.Module):
    """`backbone` (timm, without classifier) followed by `head` (an `mld.heads.Head`).

    Takes images in [0, 1] and normalises them as the backbone's weights expect (`normalization`),
    inside the model, so that training, evaluation, feature caching and cost measurements all see
    the same inputs.
    """

    def __init__(self, backbone: nn.Module, head: Head, normalization: Normalization | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.multiscale = head.feature_kind == "multiscale"
        # Some timm models (Swin, ...) return channels-last maps from forward_features.
        self.channels_last_features = getattr(backbone, "output_fmt", "NCHW") == "NHWC"
        self.normalization = normalization
        if normalization is not None:  # not persistent: checkpoints keep the layout of the official files
            mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in normalization)
            self.register_buffer("input_mean", mean, persistent=False)
            self.register_buffer("input_std", std, persistent=False)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Images [B, 3, H, W] in [0, 1] -> a [B, C, H, W] map, [B, L, C] tokens, or per-stage maps."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
        if self.normalization is not None:
            images = (images - self.input_mean) / self.input_std
        if self.multiscale:
            return list(self.backbone(images))
        features = self.backbone.forward_features(images)
        if self.channels_last_features and features.ndim == 4:
            features = features.permute(0, 3, 1, 2)
        return features

    def forward_head(self, features: torch.Tensor | list[torch.Tensor], class_embeddings: Any = None) -> torch.Tensor:
        return self.head(features, class_embeddings)

    def forward(self, images: torch.Tensor, class_embeddings: Any = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(images), class_embeddings)


def create_model(
    backbone: str,
    head: str,
    num_classes: int,
    num_groups: int | None = None,
    pretrained: bool = False,
    *,
    backbone_weights: str | PathLike | None = None,
    backbone_options: Mapping[str, Any] | None = None,
    head_options: Mapping[str, Any] | None = None,
    normalize: str | Mapping[str, Any] | None = NORMALIZE_TIMM,
    **options: Any,
) -> MLDModel:
    """Any timm backbone with any registered head.

    pretrained=True loads timm's hub weights; backbone_weights loads a local state dict instead
    (a bare backbone state dict, or a checkpoint whose "state_dict"/"model" entry holds one, possibly
    an MLDModel's, whose "backbone.*" entries are then used). Head options come from head_options
    and/or plain keyword options; backbone_options go to timm.create_model. `normalize` says how
    the model normalises its [0, 1] inputs (`input_normalization`; default: as timm's weights expect).
    """
    merged = dict(head_options or {})
    duplicated = sorted(set(merged) & set(options))
    if duplicated:
        raise ValueError(f"head option(s) {', '.join(duplicated)} given both in head_options and as keywords")
    merged.update(options)
    if num_groups is not None:
        if "num_groups" in merged:
            raise ValueError("num_groups given both as an argument and as a head option")
        merged["num_groups"] = num_groups
    check_head_options(head, merged)
    multiscale = head_class(head).feature_kind == "multiscale"
    net = create_backbone(backbone, multiscale, pretrained, backbone_weights, backbone_options)
    normalization = input_normalization(backbone, normalize)
    in_channels = net.feature_info.channels() if multiscale else net.num_features
    return MLDModel(net, create_head(head, in_channels, num_classes, **merged), normalization)


def create_backbone(
    name: str,
    multiscale: bool,
    pretrained: bool = False,
    weights: str | PathLike | None = None,
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """A timm model without classifier; with multiscale, a features_only model over all stages."""
    hub_reference = isinstance(name, str) and name.startswith(_HUB_PREFIXES)
    if not hub_reference and (not isinstance(name, str) or not timm.is_model(name)):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown timm backbone {name!r}{hint} (timm.list_models() lists all)")
    if pretrained and weights is not None:
        raise ValueError("give either pretrained=True (timm hub weights) or backbone_weights (a local file), not both")
    options = dict(options or {})
    reserved = sorted(set(options) & set(_RESERVED_BACKBONE_OPTIONS))
    if reserved:
        raise ValueError(f"backbone_options may not set {', '.join(reserved)}: create_model sets them")
    if weights is None:
        extra = {"features_only": True} if multiscale else {"num_classes": 0}
        return _timm_model(name, pretrained=pretrained, **extra, **options)
    if not multiscale:
        net = _timm_model(name, num_classes=0, **options)
        load_backbone_weights(net, weights)
        return net
    # timm wraps a features_only model only after loading weights into the plain model, so
    # the weights are checked on the plain model and then handed to timm as a state dict.
    plain = _timm_model(name, **options)
    load_backbone_weights(plain, weights)
    return _timm_model(
        name, features_only=True, pretrained=True, pretrained_cfg_overlay={"state_dict": plain.state_dict()}, **options
    )


def load_backbone_weights(net: nn.Module, path: str | PathLike) -> None:
    """Load a local state dict into a timm model; classifier entries on either side are ignored."""
    state = _unwrap(_read_checkpoint(path))
    if any(key.startswith("backbone.") for key in state):
        state = {key[len("backbone."):]: value for key, value in state.items() if key.startswith("backbone.")}
    state = _timm_checkpoint_filter(net)(state, net)
    classifier = _classifier_prefixes(net)
    state = {key: value for key, value in state.items() if not key.startswith(classifier)}
    expected = {key: value for key, value in net.state_dict().items() if not key.startswith(classifier)}
    _check_state_dict(expected, state, f"backbone weights {path}")
    net.load_state_dict(state, strict=False)


def load_official_checkpoint(model: MLDModel, path_or_state_dict: str | PathLike | Mapping[str, Any]) -> MLDModel:
    """Load an official ML-Decoder checkpoint (head under head.decoder.* or fc.decoder.*) into `model`.

    The model needs the official configuration: an 'ml_decoder' head with group_order='plain' and
    the same backbone. Backbone entries pass through timm's own converter for that backbone (e.g.
    the official TResNet layout). Any missing, unexpected or mis-shaped entry raises ValueError.
    """
    if isinstance(path_or_state_dict, Mapping):
        source, state = "the given state dict", _unwrap(dict(path_or_state_dict))
    else:
        source, state = str(path_or_state_dict), _unwrap(_read_checkpoint(path_or_state_dict))
    prefix = _official_head_prefix(state, source)
    head_state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    backbone_state = {key: value for key, value in state.items() if not key.startswith(prefix)}
    mapped_head, unmatched = official_head_state_dict(model.head, head_state)
    backbone_state = _timm_checkpoint_filter(model.backbone)(backbone_state, model.backbone)
    combined = {f"backbone.{key}": value for key, value in backbone_state.items()}
    combined.update({f"head.{key}": value for key, value in mapped_head.items()})
    expected = model.state_dict()
    # The class word vectors describe the dataset, not the weights: official files do not carry them.
    expected.pop("head.word_vectors", None)
    _check_state_dict(expected, combined, source, unexpected_extra=[prefix + key for key in unmatched])
    model.load_state_dict(combined, strict=False)
    return model


def _official_head_prefix(state: StateDict, source: str) -> str:
    for prefix in ("head.", "fc."):  # TResNet, ResNet
        if any(key.startswith(prefix + "decoder.") for key in state):
            return prefix
    sample = ", ".join(list(state)[:5])
    raise ValueError(
        f"{source} has no ML-Decoder head: expected keys under 'head.decoder.' (TResNet) or 'fc.decoder.' "
        f"(ResNet); its first keys are: {sample}"
    )


def _read_checkpoint(path: str | PathLike) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint file not found: {path}") from None
    except Exception as error:  # torch raises UnpicklingError or RuntimeError depending on the content
        raise ValueError(
            f"cannot read {path} as a weights-only checkpoint (loading never runs pickled code): {error}"
        ) from error


def _unwrap(checkpoint: Any) -> StateDict:
    """The state dict inside a checkpoint: itself, or its "state_dict" / "model" entry."""
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError("the checkpoint is not a state dict of tensors (nor holds one under 'state_dict' or 'model')")
    state = dict(checkpoint)
    if state and all(key.startswith("module.") for key in state):  # saved from DistributedDataParallel
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _check_state_dict(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], source: str, unexpected_extra: list[str] = ()
) -> None:
    """Raise one ValueError listing every missing, unexpected and mis-shaped entry."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected)) + list(unexpected_extra)
    mis_shaped = [
        f"{key}: file {tuple(given[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(given))
        if given[key].shape != expected[key].shape
    ]
    problems = [
        f"{label} ({len(items)}): {', '.join(items[:12])}{' ...' if len(items) > 12 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mis_shaped))
        if items
    ]
    if problems:
        raise ValueError(f"{source} does not match the model: " + "; ".join(problems))


def _timm_checkpoint_filter(net: nn.Module):
    """timm's converter for checkpoints of this architecture (e.g. official TResNet), or the identity."""
    module = sys.modules.get(type(net).__module__)
    return getattr(module, "checkpoint_filter_fn", lambda state, model: state)


def _classifier_prefixes(net: nn.Module) -> tuple[str, ...]:
    names = (getattr(net, "pretrained_cfg", None) or {}).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{name}." for name in names)


def _timm_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError) as error:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not load pretrained weights for {name!r}: {error}. Without access to the weights hub, "
            "pass backbone_weights=<local state dict file> instead"
        ) from error
