"""Which group query decodes which class (ML-Decoder's group-decoding, paper section 2.3.2).

The group fully-connected layer produces `num_groups x group_size` outputs ("slots"); slot
s belongs to group s // group_size. A layout says which slot each class reads:
* "plain": class c reads slot c, the order of the official code (needed for its checkpoints);
* "random": classes take distinct slots in a random order fixed by a seed, as the paper
  divides classes into groups at random (the engine seeds it with the run's seed).

A class set of N' classes uses ceil(N' / group_size) groups. The layout is a pure function of
(N', group_size, order, seed): a class set of the training set's size decodes like the training
set, and the unseen classes scored alone get groups of their own. A set that extends the
training set (`followed_by`) keeps the training classes' slots and puts the new classes in new
groups after them, laid out as if they were scored alone.
"""
from __future__ import annotations

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

    def followed_by(self, other: GroupLayout) -> GroupLayout:
        """This layout's classes where they are, then `other`'s classes in groups after them."""
        if other.group_size != self.group_size:
            raise ValueError(f"cannot join layouts of group sizes {self.group_size} and {other.group_size}")
        extra = other.class_slots.to(self.class_slots.device) + self.num_slots
        return GroupLayout(torch.cat([self.class_slots, extra]), self.group_size,
                           self.num_groups + other.num_groups)


def group_layout(
    num_classes: int, group_size: int, order: str, seed: int, device: torch.device | None = None
) -> GroupLayout:
    """The layout of `num_classes` classes in groups of `group_size`.

    Not cached: a cache keyed by device would hand the fake tensors of a memory estimate
    (mld.engine.costing) to later real calls. Heads keep their training layout as a buffer.
    """
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
