"""The official ML-Decoder head's state-dict layout, translated to `MLDecoderHead`'s.

The official head (Alibaba-MIIL/ML_Decoder) keeps its parts under `decoder.*`: the input
projection `embed_standart`, the fixed queries `query_embed`, a one-layer
`nn.TransformerDecoder` (`layers.0.{norm1,multihead_attn,norm2,linear1,linear2,norm3}`) and the
group-FC weights `duplicate_pooling` [K, D, g] with the per-class bias `duplicate_pooling_bias`
[N]. Its zero-shot variant replaces the queries by `wordvec_proj` (a Linear from the word vectors)
and uses a shared [D, 1] group-FC weight with a [1] bias. Key names below are facts about that
layout; the translation targets this package's own modules.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from mld.heads.ml_decoder import MLDecoderHead

# (official head-local key pattern, MLDecoderHead key)
_RENAMES = (
    (r"decoder\.embed_standart\.(weight|bias)", r"input_proj.\1"),
    (r"decoder\.query_embed\.weight", "queries.weight"),
    (r"wordvec_proj\.(weight|bias)", r"queries.proj.\1"),
    (r"decoder\.layers\.(\d+)\.(norm[123])\.(weight|bias)", r"layers.\1.\2.\3"),
    (r"decoder\.layers\.(\d+)\.multihead_attn\.(in_proj_weight|in_proj_bias)", r"layers.\1.cross_attn.\2"),
    (r"decoder\.layers\.(\d+)\.multihead_attn\.out_proj\.(weight|bias)", r"layers.\1.cross_attn.out_proj.\2"),
    (r"decoder\.layers\.(\d+)\.linear1\.(weight|bias)", r"layers.\1.mlp.0.\2"),
    (r"decoder\.layers\.(\d+)\.linear2\.(weight|bias)", r"layers.\1.mlp.3.\2"),
    (r"decoder\.duplicate_pooling", "group_fc.weight"),
    (r"decoder\.duplicate_pooling_bias", "group_fc.bias"),
)


def official_head_state_dict(
    head: nn.Module, official: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official head-local entries -> (entries under `head`'s names, official keys with no counterpart).

    Raises ValueError when `head` is not configured like the official head, naming what to change.
    """
    zero_shot = "wordvec_proj.weight" in official or official.get("decoder.duplicate_pooling", torch.empty(0)).ndim == 2
    _check_configuration(head, zero_shot)
    mapped: dict[str, torch.Tensor] = {}
    unmatched = []
    for key, value in official.items():
        target = _rename(key)
        if target is None:
            unmatched.append(key)
        else:
            mapped[target] = value
    if zero_shot and "queries.proj.weight" not in mapped:
        # decoder_embedding == word-vector width: the official projection is the identity.
        word_dim = head.queries.proj.in_features
        mapped["queries.proj.weight"] = torch.eye(word_dim)
        mapped["queries.proj.bias"] = torch.zeros(word_dim)
    bias = mapped.get("group_fc.bias")
    if not zero_shot and bias is not None and bias.ndim == 1:
        # Official: one bias per class [N]; here one per slot [K * g], the slots past N unused.
        slots = head.num_groups * head.group_size
        mapped["group_fc.bias"] = torch.cat([bias, bias.new_zeros(max(slots - bias.shape[0], 0))])
    return mapped, unmatched


def _rename(key: str) -> str | None:
    for pattern, replacement in _RENAMES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def _check_configuration(head: nn.Module, zero_shot: bool) -> None:
    if not isinstance(head, MLDecoderHead) or any(layer.self_attn is not None for layer in head.layers):
        raise ValueError(
            f"an official ML-Decoder checkpoint loads into an 'ml_decoder' head; the model has {type(head).__name__}"
            + (" with self-attention" if isinstance(head, MLDecoderHead) else "")
        )
    problems = []
    if head.group_order != "plain":
        problems.append("group_order='plain' (the official class order)")
    if zero_shot:
        if head.query_type != "nlp" or head.head_type != "shared" or head.num_groups != head.num_classes:
            problems.append("query_type='nlp', head_type='shared' and num_groups=num_classes (official zero-shot)")
    elif head.query_type == "nlp" or head.head_type != "learnable":
        problems.append("query_type='fixed_random' (or 'learnable') and head_type='learnable'")
    if problems:
        raise ValueError("to load an official ML-Decoder checkpoint, build the head with " + "; ".join(problems))
