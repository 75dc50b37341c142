"""The attribute vocabulary of the synthetic benchmark and its class word vectors.

Every synthetic class is a *composition* of attribute values - a shape, a colour, a texture and
(only in the extreme-classification preset) a rim - e.g. "striped red circle". Classes of one
preset share attribute values, so telling "red circle + blue square" from "blue circle + red
square" needs to know *where* each attribute is: a head that pools the whole feature map first
(GAP) mixes the attributes of different objects, an attention head can keep them apart.

The word vectors play the role of the paper's NLP word embeddings (GloVe vectors of class names
on NUS-WIDE): each attribute value has a fixed random direction, and a class vector is the
normalised sum of its attributes' directions plus a class-specific random part. Two classes that
share attributes are therefore close, and a head that learns to map word vectors to queries on
seen classes can place an unseen composition of seen attributes (zero-shot). The vectors depend
only on the vocabulary (never on a dataset's seed), like pretrained word embeddings.
"""
from __future__ import annotations

import numpy as np

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "diamond", "cross", "ring",
    "star", "hexagon", "crescent", "semicircle", "tee", "bowtie",
)
COLOURS: tuple[str, ...] = (
    "red", "orange", "yellow", "lime", "green", "cyan",
    "blue", "purple", "magenta", "pink", "white", "black",
)
# Saturated (or white/black) object colours; clutter uses muted colours none of these are close to.
COLOUR_RGB = np.array(
    [
        (222, 32, 32), (246, 132, 18), (238, 218, 30), (150, 228, 40), (18, 150, 52), (30, 208, 222),
        (32, 72, 224), (132, 40, 204), (230, 40, 200), (255, 150, 192), (246, 246, 246), (18, 18, 18),
    ],
    dtype=np.float32,
)
TEXTURES: tuple[str, ...] = (
    "solid", "striped", "checkered", "dotted", "speckled", "gradient", "zigzag", "gridded",
)
RIMS: tuple[str, ...] = ("plain", "white-rimmed", "black-rimmed")
RIM_RGB = np.array([(0, 0, 0), (250, 250, 250), (8, 8, 8)], dtype=np.float32)

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES, "colour": COLOURS, "texture": TEXTURES, "rim": RIMS,
}
WORD_VECTOR_DIM = 300
_EMBEDDING_SEED = 20211124  # fixed: word vectors belong to the vocabulary, not to a dataset
_CLASS_SPECIFIC_WEIGHT = 0.3  # how far a class vector strays from the sum of its attributes


def composition_grid(num_shapes: int, num_colours: int, num_textures: int,
                     num_rims: int = 1) -> np.ndarray:
    """All compositions of the first values of each attribute, as rows (shape, colour, texture, rim)."""
    sizes = (num_shapes, num_colours, num_textures, num_rims)
    for (kind, values), size in zip(ATTRIBUTES.items(), sizes):
        if not 1 <= size <= len(values):
            raise ValueError(f"the {kind} vocabulary has {len(values)} values; {size} requested")
    grids = np.meshgrid(*(np.arange(size) for size in sizes), indexing="ij")
    return np.stack([grid.ravel() for grid in grids], axis=1).astype(np.int64)


def composition_name(composition: np.ndarray) -> str:
    """A readable class name, e.g. "striped red circle" or "white-rimmed dotted blue star"."""
    shape, colour, texture, rim = (int(value) for value in composition)
    words = [TEXTURES[texture], COLOURS[colour], SHAPES[shape]]
    if rim:
        words.insert(0, RIMS[rim])
    return " ".join(words)


def attribute_class_names() -> list[str]:
    """Names of the attribute classes of the pretraining set ("shape: circle", ...); plain rims excluded."""
    return [f"{kind}: {value}" for kind, values in ATTRIBUTES.items()
            for value in values if value != "plain"]


def attribute_embeddings(dim: int = WORD_VECTOR_DIM) -> dict[str, np.ndarray]:
    """One fixed random unit direction per attribute value; the plain rim is the zero vector."""
    rng = np.random.default_rng(_EMBEDDING_SEED)
    embeddings = {}
    for kind, values in ATTRIBUTES.items():
        vectors = rng.standard_normal((len(values), dim))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        if kind == "rim":
            vectors[0] = 0.0
        embeddings[kind] = vectors
    return embeddings


def composition_word_vectors(compositions: np.ndarray, dim: int = WORD_VECTOR_DIM) -> np.ndarray:
    """Unit word vectors [N, dim] float32 for compositions [N, 4]; see the module docstring."""
    embeddings = attribute_embeddings(dim)
    vectors = sum(embeddings[kind][compositions[:, column]]
                  for column, kind in enumerate(ATTRIBUTES))
    # The class-specific part is a function of the composition alone, so a class keeps its
    # vector in every preset that uses it.
    codes = _composition_codes(compositions)
    specific = np.stack([np.random.default_rng([_EMBEDDING_SEED, int(code)]).standard_normal(dim)
                         for code in codes]) if len(codes) else np.zeros((0, dim))
    specific /= np.maximum(np.linalg.norm(specific, axis=1, keepdims=True), 1e-12)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True) + _CLASS_SPECIFIC_WEIGHT * specific
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def attribute_word_vectors(dim: int = WORD_VECTOR_DIM) -> np.ndarray:
    """Word vectors of the attribute classes, in the order of `attribute_class_names`."""
    embeddings = attribute_embeddings(dim)
    rows = [embeddings[kind][index] for kind, values in ATTRIBUTES.items()
            for index, value in enumerate(values) if value != "plain"]
    return np.stack(rows).astype(np.float32)


def _composition_codes(compositions: np.ndarray) -> np.ndarray:
    sizes = [len(values) for values in ATTRIBUTES.values()]
    return np.ravel_multi_index(tuple(compositions.T), sizes) if len(compositions) else np.zeros(0, int)
