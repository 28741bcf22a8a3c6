"""Text as fixed-length integer sequences: a vocabulary learnt from training rows, then padding or truncation.

The steps of Keras' ``Tokenizer(num_words, oov_token)`` and ``pad_sequences``, in plain Python and NumPy rather
than TensorFlow's ``TextVectorization``: the model code then runs on every Keras backend, and the fitted state is a
list of words that ``preprocessing.json`` stores as it is.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from kerasflow.tasks.config.schema import TextSpec

PADDING = 0
"""The id that fills a short text up to `maxlen`."""
OOV = 1
"""The id of every word outside the vocabulary: unseen in training, or too rare to be among the `num_words`."""
FIRST_WORD = 2
"""The id of the most frequent word; the next ones follow in order of frequency."""

# TextVectorization's default `standardize` strips these (keras.src.layers.preprocessing.text_vectorization).
_PUNCTUATION = re.compile(r"[!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """The words of `text`: punctuation removed, then split on whitespace, as TextVectorization does by default.

    Examples
    --------
    >>> tokenize("It's GREAT, isn't it?")
    ['its', 'great', 'isnt', 'it']
    >>> tokenize("Rome  wasn't built...", lowercase=False)
    ['Rome', 'wasnt', 'built']
    """
    if lowercase:
        text = text.lower()
    return _PUNCTUATION.sub("", text).split()


def pad_sequences(sequences: Sequence[Sequence[int]], maxlen: int, padding: str = "pre",
                  truncating: str = "pre") -> np.ndarray:
    """Keras' `pad_sequences` with 0 as the padding value: an `(n, maxlen)` int32 matrix.

    `truncating="pre"` keeps a long sequence's last `maxlen` ids, "post" its first; `padding` puts the zeros of a
    short one before ("pre") or after ("post") its ids.

    Examples
    --------
    >>> pad_sequences([[1, 2, 3], [4]], maxlen=2).tolist()
    [[2, 3], [0, 4]]
    >>> pad_sequences([[1, 2, 3], [4]], maxlen=2, padding="post", truncating="post").tolist()
    [[1, 2], [4, 0]]
    """
    out = np.full((len(sequences), maxlen), PADDING, dtype=np.int32)
    for row, ids in enumerate(sequences):
        kept = list(ids[-maxlen:] if truncating == "pre" else ids[:maxlen])
        if not kept:
            continue
        if padding == "pre":
            out[row, maxlen - len(kept):] = kept
        else:
            out[row, :len(kept)] = kept
    return out


class Tokenizer:
    """Texts -> `(n, maxlen)` token ids, scikit-learn style (`fit` on the training texts, then `transform`).

    Parameters
    ----------
    num_words : int
        Ids run from 0 to ``num_words - 1``, as with Keras' `Tokenizer(num_words, oov_token=...)`: 0 pads, 1 is
        any word outside the vocabulary, and the ``num_words - 2`` most frequent training words get 2, 3, ...
        Words as frequent as each other are ranked alphabetically, so the vocabulary does not depend on row order.
    maxlen : int
        The length of every output row.
    padding, truncating : {"pre", "post"}
        Where short texts get their zeros and where long texts are cut (see :func:`pad_sequences`).
    lowercase : bool
        Lower-case the text before splitting it into words.

    Examples
    --------
    >>> tok = Tokenizer(num_words=4, maxlen=3).fit(["good film", "good plot", "bad film"])
    >>> tok.vocabulary_
    ['film', 'good']
    >>> tok.transform(["Good, good film!", "a bad plot"]).tolist()
    [[3, 3, 2], [1, 1, 1]]
    """

    def __init__(self, num_words: int, maxlen: int, padding: str = "pre", truncating: str = "pre",
                 lowercase: bool = True) -> None:
        self.num_words = num_words
        self.maxlen = maxlen
        self.padding = padding
        self.truncating = truncating
        self.lowercase = lowercase

    @classmethod
    def from_spec(cls, spec: TextSpec) -> "Tokenizer":
        return cls(spec.num_words, spec.maxlen, spec.padding, spec.truncating, spec.lowercase)

    def fit(self, texts: Iterable[str]) -> "Tokenizer":
        counts = Counter(word for text in texts for word in tokenize(text, self.lowercase))
        ranked = sorted(counts, key=lambda word: (-counts[word], word))
        return self.set_vocabulary(ranked[: self.num_words - FIRST_WORD])

    def set_vocabulary(self, vocabulary: Sequence[str]) -> "Tokenizer":
        """Take `vocabulary` (most frequent first) as the fitted state: what `fit` learns, or a saved model holds."""
        if len(vocabulary) > self.num_words - FIRST_WORD:
            raise ValueError(f"a vocabulary of {len(vocabulary)} words does not fit in `num_words`={self.num_words} "
                             f"ids (2 are reserved for padding and unknown words)")
        self.vocabulary_ = list(vocabulary)
        self._ids = {word: FIRST_WORD + rank for rank, word in enumerate(self.vocabulary_)}
        return self

    def transform(self, texts: Iterable[str]) -> np.ndarray:
        """Each text's word ids (1 for a word outside the vocabulary), padded or truncated to `maxlen`."""
        sequences = [[self._ids.get(word, OOV) for word in tokenize(text, self.lowercase)] for text in texts]
        return pad_sequences(sequences, self.maxlen, self.padding, self.truncating)
