"""Which group query decodes which class (ML-Decoder's group-decoding, paper section 2.3.2).

The group fully-connected layer produces `num_groups x group_size` outputs ("slots"); slot
s belongs to group s // group_size. A layout says which slot each class reads:
* "plain": class c reads slot c, the order of the official code (needed for its checkpoints);
* "random": classes take distinct slots in a random order fixed by a seed, as the paper
  divides classes into groups at random.

A class set of N' classes uses ceil(N' / group_size) groups. The layout is a pure function of
(N', group_size, order, seed), so passing the training class set explicitly as class_embeddings
decodes exactly like the default, and an unseen class set of the same size gets the same groups.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

GROUP_ORDERS = ("random", "plain")


@dataclass(frozen=True)
class GroupLayout:
    class_slots: torch.Tensor  # [N'] int64: the slot of each class
    group_size: int
    num_groups: int

    @property
    def num_classes(self) -> int:
        return self.class_slots.shape[0]

    @property
    def num_slots(self) -> int:
        return self.num_groups * self.group_size

    def with_extra_classes(self, count: int) -> GroupLayout:
        """`count` more classes placed in new groups after the existing ones, which stay as they are."""
        extra = torch.arange(self.num_slots, self.num_slots + count, device=self.class_slots.device)
        return GroupLayout(
            torch.cat([self.class_slots, extra]),
            self.group_size,
            self.num_groups + math.ceil(count / self.group_size),
        )


@functools.lru_cache(maxsize=64)
def group_layout(
    num_classes: int, group_size: int, order: str, seed: int, device: torch.device | None = None
) -> GroupLayout:
    """The layout of `num_classes` classes in groups of `group_size` (cached; do not modify it)."""
    if order not in GROUP_ORDERS:
        raise ValueError(f"unknown group_order {order!r}; valid orders: {', '.join(GROUP_ORDERS)}")
    num_groups = math.ceil(num_classes / group_size)
    if order == "plain":
        slots = torch.arange(num_classes)
    else:
        generator = torch.Generator().manual_seed(seed)
        slots = torch.randperm(num_groups * group_size, generator=generator)[:num_classes]
    return GroupLayout(slots.to(device), group_size, num_groups)


def cyclic_rows(count: int, available: int, device: torch.device) -> torch.Tensor:
    """Row indices 0..count-1 wrapped onto `available` trained rows (identity when count <= available)."""
    return torch.arange(count, device=device) % available
