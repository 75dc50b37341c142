"""The model a run trains: backbone + head end to end, or the head alone on cached features."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

import mld
from mld.heads import Head, create_head, head_class, head_options


class HeadOnlyModel(nn.Module):
    """A head dressed in the model contract, for training on cached features.

    The cached feature maps are the backbone's output, so `forward_features` is the identity and
    the whole model is the head: the backbone is frozen by construction and never runs.
    """

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.head = head

    def forward_features(self, features: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        return features

    def forward_head(self, features: torch.Tensor | list[torch.Tensor], class_embeddings: Any = None) -> torch.Tensor:
        return self.head(features, class_embeddings)

    def forward(self, features: torch.Tensor | list[torch.Tensor], class_embeddings: Any = None) -> torch.Tensor:
        return self.head(features, class_embeddings)


def uses_word_vectors(head: str, options: Mapping[str, Any]) -> bool:
    """Whether head `head` with `options` builds on class word vectors (and must be given them)."""
    return head_class(head).needs_word_vectors(options)


# The head option that seeds a head's random group assignment; the run's seed sets it.
GROUP_SEED = "group_seed"


def head_options_for(model_config: Mapping[str, Any], word_vectors: torch.Tensor | None,
                     seed: int = 0) -> dict[str, Any]:
    """The run's head options, with the training classes' word vectors added where the head uses them.

    Heads that divide classes into groups at random draw that division from the run's `seed`
    (unless head_options name a group_seed), so that the spread over seeds includes it.
    """
    options = dict(model_config["head_options"])
    if model_config["num_groups"] is not None:
        options["num_groups"] = model_config["num_groups"]
    if GROUP_SEED not in options and GROUP_SEED in head_options(model_config["head"]):
        options[GROUP_SEED] = seed
    if "word_vectors" not in options and uses_word_vectors(model_config["head"], options):
        if word_vectors is None:
            raise ValueError(f"head {model_config['head']} with options {options} needs class word vectors, "
                             "but the dataset has no word_vectors.npy")
        options["word_vectors"] = word_vectors
    return options


def build_model(model_config: Mapping[str, Any], num_classes: int, word_vectors: torch.Tensor | None,
                feature_channels: int | list[int] | None = None, *, seed: int = 0) -> nn.Module:
    """End to end (`feature_channels` None): `mld.create_model`; else a head for cached features.

    `seed` is the run's seed (the config's `seed`): it draws the random group assignment, so a
    trained model is rebuilt with the seed it was trained with. Costs do not depend on it.
    """
    options = head_options_for(model_config, word_vectors, seed)
    if feature_channels is not None:
        return HeadOnlyModel(create_head(model_config["head"], feature_channels, num_classes, **options))
    return mld.create_model(model_config["backbone"], model_config["head"], num_classes,
                            pretrained=model_config["pretrained"],
                            backbone_weights=model_config["backbone_weights"],
                            backbone_options=model_config["backbone_options"], head_options=options,
                            normalize=model_config["normalize"])
