"""Query augmentations of ML-Decoder for zero-shot learning (paper section 2.3.3, appendix K).

Both act in training only, and only on the head's input queries:
* random-query: `random_queries` extra "classes" join the class set each batch, in groups of
  their own after the real ones: random word vectors (for NLP-based queries and head weights) and,
  for a query matrix, one random query per extra group. Their logits come after the N class
  columns and their target is positive (the label "noise"), so `extend_targets` pads the targets
  with ones;
* additive noise: each batch, Gaussian noise is added to the input queries (the word vectors of
  NLP-based queries, the query matrix otherwise).

Scales are relative to the queries themselves so that one setting fits any word-vector model:
noise has standard deviation `query_noise` x the RMS of the input queries, and random word vectors
(queries) share the mean and standard deviation of the class word vectors (query matrix).
"""
from __future__ import annotations

import torch


class QueryAugmentation:
    """The two switchable query augmentations; both are off at their defaults."""

    def __init__(self, random_queries: int = 0, query_noise: float = 0.0) -> None:
        if isinstance(random_queries, bool) or not isinstance(random_queries, int) or random_queries < 0:
            raise ValueError(f"random_queries={random_queries!r} must be an int >= 0 (0 turns it off)")
        if not isinstance(query_noise, (int, float)) or query_noise < 0:
            raise ValueError(f"query_noise={query_noise!r} must be a number >= 0 (0 turns it off)")
        self.random_queries = random_queries
        self.query_noise = float(query_noise)

    def add_noise(self, queries: torch.Tensor) -> torch.Tensor:
        """Input queries plus one fresh draw of noise (unchanged when query_noise is 0)."""
        if self.query_noise == 0:
            return queries
        scale = self.query_noise * queries.detach().pow(2).mean().sqrt()
        return queries + scale * torch.randn_like(queries)

    @staticmethod
    def random_rows(reference: torch.Tensor, count: int) -> torch.Tensor:
        """`count` fresh random rows whose entries share the mean and standard deviation of `reference`'s."""
        reference = reference.detach()
        noise = torch.randn(count, reference.shape[1], device=reference.device, dtype=reference.dtype)
        return reference.mean() + reference.std() * noise


def extend_targets(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targets [B, N] padded with ones (positive "noise" labels) to the width of `logits` [B, N + R]."""
    extra = logits.shape[1] - targets.shape[1]
    if extra < 0 or logits.shape[0] != targets.shape[0]:
        raise ValueError(
            f"logits {tuple(logits.shape)} cannot extend targets {tuple(targets.shape)}: "
            "the logits need the same batch size and at least as many columns"
        )
    if extra == 0:
        return targets
    return torch.cat([targets, targets.new_ones(targets.shape[0], extra)], dim=1)
