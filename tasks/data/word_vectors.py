"""Pretrained word vectors (GloVe's text format) as an embedding's starting weights, for a text vocabulary.

A file of lines `word v1 v2 ... vd`, as GloVe ships them (`glove.6B.100d.txt`; word2vec's and fastText's `.vec`
text files too, whose first line gives the counts): the books' Chollet, Deep Learning with Python, 6.1.3 builds the
embedding matrix from it for the tokenizer's words, and a word the file lacks keeps a row of zeros. Nothing
downloads: the user names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.data.text import FIRST_WORD


@dataclass(frozen=True)
class WordVectors:
    """A file's vectors: one float32 row each, `rows[word]` its row in `vectors`."""

    rows: dict[str, int]
    vectors: np.ndarray

    def matrix(self, vocabulary: list[str], num_words: int) -> tuple[np.ndarray, int]:
        """The `(num_words, width)` weights of an embedding reading a tokenizer's ids, and how many of
        `vocabulary`'s words the file has: the vector of the word with id 2 + rank at that row (the vocabulary most
        frequent first, :class:`kerasflow.tasks.data.text.Tokenizer`), zeros for padding, for the out-of-vocabulary
        id and for a word the file lacks.

        Examples
        --------
        >>> vectors = WordVectors({"good": 0, "film": 1}, np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
        >>> matrix, found = vectors.matrix(["film", "plot"], num_words=5)
        >>> matrix.tolist(), found
        ([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [0.0, 0.0]], 1)
        """
        matrix = np.zeros((num_words, self.vectors.shape[1]), dtype=np.float32)
        found = [(FIRST_WORD + rank, self.rows[word]) for rank, word in enumerate(vocabulary) if word in self.rows]
        if found:
            ids, rows = zip(*found)
            matrix[list(ids)] = self.vectors[list(rows)]
        return matrix, len(found)


def read_word_vectors(path: str | Path, width: int, key: str) -> WordVectors:
    """The vectors in `path`, each `width` numbers long (the embedding's output_dim); read once per process for an
    unchanged file (every fold and the refit share it). Raises :class:`ParamsError` naming `key` (the layer's
    `weights`) for a file that is missing, not in GloVe's format, or of another width."""
    try:
        stat = Path(path).stat()
    except OSError:
        raise ParamsError(f"{key}: {path}: file not found; save the word vectors (e.g. GloVe's glove.6B.100d.txt) "
                          f"there once, nothing downloads at run time") from None
    try:
        return _read(str(path), stat.st_mtime_ns, stat.st_size, width)
    except (ValueError, UnicodeDecodeError) as problem:
        raise ParamsError(f"{key}: {path}{problem}") from None
    except OSError as problem:  # a folder, or a file this user may not read
        raise ParamsError(f"{key}: {path}: cannot be read ({problem.strerror or problem}); expected a file of word "
                          f"vectors (GloVe's format)") from None


@lru_cache(maxsize=1)
def _read(path: str, mtime_ns: int, size: int, width: int) -> WordVectors:
    """Each line's last `width` fields are its vector and the rest its word: GloVe's larger files have words with
    spaces in them. Errors start with what follows the file's name in the message."""
    rows: dict[str, int] = {}
    vectors: list[np.ndarray] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip().split(" ")
            if number == 1 and len(fields) == 2 and all(field.isdigit() for field in fields):
                continue  # word2vec's and fastText's header: the number of words and their width
            if number == 1 and len(fields) - 1 != width:
                raise ValueError(f" holds vectors of {len(fields) - 1} numbers, but the embedding's output_dim is "
                                 f"{width}: make them equal")
            if len(fields) <= width:
                raise ValueError(f": line {number} has {len(fields) - 1} numbers, the lines before it {width}")
            try:
                with np.errstate(over="ignore"):  # past float32's range: inf, refused below
                    vector = np.asarray(fields[-width:], dtype=np.float32)
            except ValueError:
                raise ValueError(f": line {number} is not a word followed by {width} numbers (GloVe's "
                                 f"format)") from None
            if not np.isfinite(vector).all():
                raise ValueError(f": line {number} holds a number that is not finite (nan, inf, or too large for "
                                 f"32 bits)")
            vectors.append(vector)
            rows.setdefault(" ".join(fields[:-width]), len(vectors) - 1)
    if not vectors:
        raise ValueError(": no word vectors in it (GloVe's format: a word, then its numbers, per line)")
    return WordVectors(rows, np.stack(vectors))
