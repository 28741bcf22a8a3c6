"""Pretrained word vectors (GloVe's text format) as an embedding's starting weights, for a text vocabulary.

A file of lines `word v1 v2 ... vd`, as GloVe ships them (`glove.6B.100d.txt`): the books' Chollet, Deep Learning
with Python, 6.1.3 builds the embedding matrix from it for the tokenizer's words, and a word the file lacks keeps a
row of zeros. Nothing downloads: the user names the file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.data.text import FIRST_WORD


def read_word_vectors(path: str | Path, width: int, key: str) -> dict[str, np.ndarray]:
    """Every word's float32 vector in `path`, each `width` numbers long (the embedding's output_dim); read once per
    process for an unchanged file (every fold and the refit share it). Raises :class:`ParamsError` naming `key`
    (the layer's `weights`) for a file that is missing, not GloVe's format, or of another width."""
    try:
        stat = Path(path).stat()
    except OSError:
        raise ParamsError(f"{key}: {path}: file not found; save the word vectors (e.g. GloVe's glove.6B.100d.txt) "
                          f"there once, nothing downloads at run time") from None
    try:
        vectors = _read(str(path), stat.st_mtime_ns, stat.st_size)
    except (ValueError, UnicodeDecodeError) as problem:
        raise ParamsError(f"{key}: {path}: {problem}") from None
    found = len(next(iter(vectors.values())))
    if found != width:
        raise ParamsError(f"{key}: {path} holds vectors of {found} numbers, but the embedding's output_dim is "
                          f"{width}: make them equal")
    return vectors


@lru_cache(maxsize=1)
def _read(path: str, mtime_ns: int, size: int) -> dict[str, np.ndarray]:
    vectors: dict[str, np.ndarray] = {}
    width = None
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            word, *values = line.rstrip("\n").rstrip(" ").split(" ")
            if not values:
                continue
            try:
                vector = np.asarray(values, dtype=np.float32)
            except ValueError:
                raise ValueError(f"line {number} is not a word followed by numbers (GloVe's format)") from None
            if width is not None and len(vector) != width:
                raise ValueError(f"line {number} has {len(vector)} numbers, the lines before it {width}")
            width = len(vector)
            vectors[word] = vector
    if not vectors:
        raise ValueError("no word vectors in it (GloVe's format: a word, then its numbers, per line)")
    return vectors


def embedding_matrix(vectors: dict[str, np.ndarray], vocabulary: list[str], num_words: int) -> np.ndarray:
    """The `(num_words, width)` weights of an embedding reading a tokenizer's ids: the vector of the word with id
    2 + rank at that row (the vocabulary most frequent first, :class:`kerasflow.tasks.data.text.Tokenizer`), zeros
    for padding, for the out-of-vocabulary id and for a word the file lacks.

    Examples
    --------
    >>> vectors = {"good": np.array([1.0, 2.0], dtype=np.float32), "film": np.array([3.0, 4.0], dtype=np.float32)}
    >>> embedding_matrix(vectors, ["film", "plot"], num_words=5).tolist()
    [[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [0.0, 0.0]]
    """
    width = len(next(iter(vectors.values())))
    matrix = np.zeros((num_words, width), dtype=np.float32)
    for rank, word in enumerate(vocabulary):
        if (vector := vectors.get(word)) is not None:
            matrix[FIRST_WORD + rank] = vector
    return matrix
