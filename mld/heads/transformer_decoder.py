"""The transformer-decoder baseline head (paper section 2.2, Eq. 2).

N queries, one per class, go through self-attention, cross-attention to the image tokens and a
feed-forward layer; token pooling then reduces each class's query to its logit with that class's
own weight vector. It is ML-Decoder's pipeline with self-attention kept and full decoding
(K = N, one class per group, per-class pooling weights), so both heads share one implementation
and differ exactly where the paper says they do.
"""
from __future__ import annotations

from typing import Any

from mld.heads.ml_decoder import MLDecoderHead


class TransformerDecoderHead(MLDecoderHead):
    """Transformer-decoder head.

    Options:
        num_layers: stacked decoder layers, each with self-attention (1 by default).
        decoder_dim, num_heads, ff_dim, dropout: D = 768, 8 heads, feed-forward 2048, dropout 0.1.
        query_type: "learnable" (the baseline), "fixed_random" or "nlp" (needs word_vectors).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_layers: int = 1,
        decoder_dim: int = 768,
        num_heads: int = 8,
        ff_dim: int = 2048,
        dropout: float = 0.1,
        query_type: str = "learnable",
        word_vectors: Any = None,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            num_groups=num_classes,
            num_layers=num_layers,
            decoder_dim=decoder_dim,
            num_heads=num_heads,
            ff_dim=ff_dim,
            dropout=dropout,
            query_type=query_type,
            head_type="learnable",
            word_vectors=word_vectors,
            group_order="plain",
            self_attention=True,
        )
