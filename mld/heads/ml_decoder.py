"""ML-Decoder (paper section 2.3, appendices B and K-M).

Flow: image tokens -> Linear to D + ReLU -> K queries -> decoder layers without self-attention
(cross-attention + feed-forward) -> group fully-connected -> one logit per class.

Zero-shot: with NLP-based queries and/or NLP head weights, `class_embeddings` [N', d_w] chooses
the scored class set at call time. The new set keeps the trained group size g = ceil(N / K) and
uses ceil(N' / g) groups (see `mld.heads.grouping`), so queries and head weights are re-derived
from the new word vectors exactly as they were for the training classes. A set larger than the
training set is read as the training classes first, then new ones: the training classes keep their
training groups and the new classes get groups of their own (the GZSL pass of mld.engine.evaluation).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from mld.heads.augment import QueryAugmentation
from mld.heads.base import Head, as_word_vectors
from mld.heads.decoder_layer import DecoderLayer
from mld.heads.group_fc import HEAD_TYPES, create_group_weights, group_fc
from mld.heads.grouping import GROUP_ORDERS, GroupLayout, group_layout
from mld.heads.queries import QUERY_TYPES, create_queries


class MLDecoderHead(Head):
    """ML-Decoder head.

    Options:
        num_groups: K group queries, 1 <= K <= N; None (default) is full decoding, K = N.
        num_layers: stacked decoder layers (1 in the paper).
        decoder_dim, num_heads, ff_dim, dropout: D = 768, 8 heads, feed-forward 2048, dropout 0.1.
        query_type: "fixed_random" (official: N(0, 1), not trained), "learnable" or "nlp" (Eq. 5).
        head_type: group-FC weights, "learnable" (Eq. 3), "shared" (W_k = W) or "nlp" (Eq. 6).
        word_vectors: [N, d_w] class word vectors, required by (and only by) "nlp" queries or head.
        group_order: "random" (the paper, seeded by group_seed, which the engine sets to the run's
            seed) or "plain" (official checkpoints).
        random_queries, query_noise: the training-only query augmentations (mld.heads.augment).
        self_attention: put self-attention back into every layer (the transformer-decoder of Eq. 2).
    """

    @classmethod
    def needs_word_vectors(cls, options: Mapping[str, Any]) -> bool:
        """NLP queries or an NLP head (a `query_type` / `head_type` of "nlp") build on word vectors."""
        parameters = inspect.signature(cls.__init__).parameters
        return any(options.get(name, parameters[name].default) == "nlp"
                   for name in ("query_type", "head_type") if name in parameters)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_groups: int | None = None,
        num_layers: int = 1,
        decoder_dim: int = 768,
        num_heads: int = 8,
        ff_dim: int = 2048,
        dropout: float = 0.1,
        query_type: str = "fixed_random",
        head_type: str = "learnable",
        word_vectors: Any = None,
        group_order: str = "random",
        group_seed: int = 0,
        random_queries: int = 0,
        query_noise: float = 0.0,
        self_attention: bool = False,
    ) -> None:
        super().__init__(in_channels, num_classes)
        num_groups = self.num_classes if num_groups is None else num_groups
        _check_int("num_groups", num_groups, 1, self.num_classes, "(num_groups = num_classes is full decoding)")
        _check_int("num_layers", num_layers, 1)
        _check_int("group_seed", group_seed, 0)
        for name, value in (("decoder_dim", decoder_dim), ("num_heads", num_heads), ("ff_dim", ff_dim)):
            _check_int(name, value, 1)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout!r} must be in [0, 1)")
        _check_choice("query_type", query_type, QUERY_TYPES)
        _check_choice("head_type", head_type, HEAD_TYPES)
        _check_choice("group_order", group_order, GROUP_ORDERS)

        uses_word_vectors = "nlp" in (query_type, head_type)
        if uses_word_vectors and word_vectors is None:
            raise ValueError(
                f"query_type={query_type!r} / head_type={head_type!r} build on word vectors; "
                f"pass word_vectors=[{self.num_classes}, d_w]"
            )
        if word_vectors is not None and not uses_word_vectors:
            raise ValueError(
                "word_vectors are used only by query_type='nlp' or head_type='nlp'; "
                f"this head has query_type={query_type!r}, head_type={head_type!r}"
            )
        augmentation = QueryAugmentation(random_queries, query_noise)

        self.num_groups = num_groups
        self.group_size = math.ceil(self.num_classes / num_groups)
        # Random queries form groups of their own, after the classes' groups; learnable head
        # weights hold those extra groups too.
        random_groups = math.ceil(random_queries / self.group_size)
        self.group_order = group_order
        self.group_seed = group_seed
        self.query_type = query_type
        self.head_type = head_type
        self.augmentation = augmentation
        vectors = None
        if uses_word_vectors:  # a copy: the buffer must not follow later changes to the caller's array
            vectors = as_word_vectors(word_vectors, "word_vectors", rows=self.num_classes).detach().clone()
        self.register_buffer("word_vectors", vectors)
        # The training classes' slots, a buffer so that it follows the head's device (and a fake
        # copy of the head in a memory estimate); not saved: group_seed re-creates it.
        training = group_layout(self.num_classes, self.group_size, group_order, group_seed)
        self.register_buffer("class_slots", training.class_slots, persistent=False)
        self.layout_groups = training.num_groups
        word_dim = None if vectors is None else vectors.shape[1]

        self.input_proj = nn.Linear(self.in_channels, decoder_dim)
        self.queries = create_queries(query_type, num_groups, decoder_dim, self.group_size, word_dim)
        self.layers = nn.ModuleList(
            DecoderLayer(decoder_dim, num_heads, ff_dim, dropout, self_attention) for _ in range(num_layers)
        )
        self.group_fc = create_group_weights(
            head_type, num_groups + random_groups, decoder_dim, self.group_size, word_dim
        )

    @property
    def supports_class_embeddings(self) -> bool:
        return self.word_vectors is not None

    def decode(self, tokens: torch.Tensor, class_embeddings: Any) -> torch.Tensor:
        embeddings = self._class_set(class_embeddings, tokens.device)
        layout = self.layout(self.num_classes if embeddings is None else embeddings.shape[0])
        inputs = self.queries.inputs(layout, embeddings)
        if self.training and self.augmentation.random_queries:
            inputs, embeddings, layout = self._add_random_queries(inputs, embeddings, layout)
        if self.training:
            inputs = self.augmentation.add_noise(inputs)
        queries = self.queries.embed(inputs, layout)  # [K', D]

        memory = F.relu(self.input_proj(tokens))
        # A copy, not a view: under no_grad a view of the query parameter breaks torch's module
        # tracking (FlopCounterMode), and the first layer materialises it anyway.
        decoded = queries.unsqueeze(0).repeat(tokens.shape[0], 1, 1)
        for layer in self.layers:
            decoded = layer(decoded, memory)
        return self._logits(decoded, layout, embeddings)

    def layout(self, num_classes: int) -> GroupLayout:
        """The groups of a class set of `num_classes` classes (see the module docstring)."""
        training = GroupLayout(self.class_slots, self.group_size, self.layout_groups)
        if num_classes == self.num_classes:
            return training
        if num_classes > self.num_classes:
            return training.followed_by(self._new_layout(num_classes - self.num_classes, self.group_order))
        return self._new_layout(num_classes, self.group_order)

    def _new_layout(self, num_classes: int, order: str) -> GroupLayout:
        return group_layout(num_classes, self.group_size, order, self.group_seed, self.class_slots.device)

    def _add_random_queries(
        self, inputs: torch.Tensor, embeddings: torch.Tensor | None, layout: GroupLayout
    ) -> tuple[torch.Tensor, torch.Tensor | None, GroupLayout]:
        """Append the random "noise" classes: new groups, random word vectors and/or random queries."""
        extended = layout.followed_by(self._new_layout(self.augmentation.random_queries, "plain"))
        if embeddings is not None:
            random_words = self.augmentation.random_rows(embeddings, self.augmentation.random_queries)
            embeddings = torch.cat([embeddings, random_words])
        if self.queries.uses_word_vectors:
            inputs = embeddings
        else:
            extra_groups = extended.num_groups - layout.num_groups
            inputs = torch.cat([inputs, self.augmentation.random_rows(inputs, extra_groups)])
        return inputs, embeddings, extended

    def _logits(self, decoded: torch.Tensor, layout: GroupLayout, embeddings: torch.Tensor | None) -> torch.Tensor:
        weight, slot_bias = self.group_fc.weights(layout, embeddings)
        slot_logits = group_fc(decoded, weight) + slot_bias
        return slot_logits.index_select(1, layout.class_slots)

    def _class_set(self, class_embeddings: Any, device: torch.device) -> torch.Tensor | None:
        """The word vectors of the classes to score: the call's class set or the training one."""
        if class_embeddings is None:
            return self.word_vectors
        word_dim = self.word_vectors.shape[1]
        return as_word_vectors(class_embeddings, "class_embeddings", dim=word_dim).to(device)


def _check_int(name: str, value: Any, low: int, high: int | None = None, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name}={value!r} must be an int {bounds} {hint}".rstrip())


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(choices)}")
