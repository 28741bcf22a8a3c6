"""Text as the model's input: a vocabulary learnt from training rows, then each text as fixed-length integer
sequences (padded or truncated) or as one bag-of-words vector (multi-hot, counts or TF-IDF, of words and n-grams).

The steps of Keras' ``Tokenizer(num_words, oov_token)``, ``pad_sequences`` and ``TextVectorization``'s bag output
modes, in plain Python and NumPy rather than TensorFlow's ``TextVectorization``: the model code then runs on every
Keras backend, and the fitted state is a list of words (and TF-IDF's weights) that ``preprocessing.json`` stores
as it is.
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


def ngrams(words: Sequence[str], n: int) -> list[str]:
    """`words`, then each run of 2, .., `n` of them joined by a space, as TextVectorization's `ngrams=n` makes them.

    Examples
    --------
    >>> ngrams(["the", "cat", "sat"], 2)
    ['the', 'cat', 'sat', 'the cat', 'cat sat']
    """
    return [" ".join(words[start:start + size]) for size in range(1, n + 1) for start in range(len(words) - size + 1)]


def inverse_document_frequency(document_counts: np.ndarray, documents: int) -> np.ndarray:
    """TextVectorization's TF-IDF weight of tokens found in `document_counts` of `documents` texts:
    log(1 + documents / (1 + document_count))."""
    return np.log1p(documents / (1.0 + document_counts))


class Tokenizer:
    """Texts -> token ids or bags of words, scikit-learn style (`fit` on the training texts, then `transform`).

    Parameters
    ----------
    num_words : int
        Ids run from 0 to ``num_words - 1``, as with Keras' `Tokenizer(num_words, oov_token=...)`: 0 pads, 1 is
        any token outside the vocabulary, and the ``num_words - 2`` most frequent training tokens get 2, 3, ...
        Tokens as frequent as each other are ranked alphabetically, so the vocabulary does not depend on row order.
    maxlen : int, optional
        The length of every output row of ids (`output_mode` "int").
    padding, truncating : {"pre", "post"}
        Where short texts get their zeros and where long texts are cut (see :func:`pad_sequences`).
    lowercase : bool
        Lower-case the text before splitting it into words.
    output_mode : {"int", "multi_hot", "count", "tf_idf"}
        "int": `maxlen` ids a text. The others, as Keras' `TextVectorization(output_mode=...)`: a float32 row of
        `num_words` values, position i for token id i (position 0, padding, stays 0): 1 where the text has the
        token ("multi_hot"), how often it has it ("count"), or that count times the token's inverse document
        frequency in the training texts ("tf_idf"; an unknown token's weight is the vocabulary's mean, as in Keras).
    ngrams : int
        A bag's tokens are the words and every run of 2 .. `ngrams` words (:func:`ngrams`).

    Examples
    --------
    >>> tok = Tokenizer(num_words=4, maxlen=3).fit(["good film", "good plot", "bad film"])
    >>> tok.vocabulary_
    ['film', 'good']
    >>> tok.transform(["Good, good film!", "a bad plot"]).tolist()
    [[3, 3, 2], [1, 1, 1]]
    >>> Tokenizer(num_words=4, output_mode="count").fit(["good film", "good plot", "bad film"]).transform(
    ...     ["Good, good film!", "a bad plot"]).tolist()
    [[0.0, 0.0, 1.0, 2.0], [0.0, 3.0, 0.0, 0.0]]
    """

    def __init__(self, num_words: int, maxlen: int | None = None, padding: str = "pre", truncating: str = "pre",
                 lowercase: bool = True, output_mode: str = "int", ngrams: int = 1) -> None:
        self.num_words = num_words
        self.maxlen = maxlen
        self.padding = padding
        self.truncating = truncating
        self.lowercase = lowercase
        self.output_mode = output_mode
        self.ngrams = ngrams

    @classmethod
    def from_spec(cls, spec: TextSpec) -> "Tokenizer":
        return cls(spec.num_words, spec.maxlen, spec.padding, spec.truncating, spec.lowercase, spec.output_mode,
                   spec.ngrams)

    def tokens(self, text: str) -> list[str]:
        """The tokens of `text` this tokenizer counts: its words, and in a bag its n-grams too."""
        words = tokenize(text, self.lowercase)
        return ngrams(words, self.ngrams) if self.ngrams > 1 else words

    def fit(self, texts: Iterable[str]) -> "Tokenizer":
        texts = [self.tokens(text) for text in texts]
        counts = Counter(token for tokens in texts for token in tokens)
        ranked = sorted(counts, key=lambda token: (-counts[token], token))[: self.num_words - FIRST_WORD]
        if self.output_mode != "tf_idf":
            return self.set_vocabulary(ranked)
        kept = set(ranked)
        in_texts = Counter(token for tokens in texts for token in kept.intersection(tokens))
        weights = inverse_document_frequency(np.array([in_texts[token] for token in ranked], dtype=np.float64),
                                             len(texts))
        return self.set_vocabulary(ranked, weights.tolist())

    def set_vocabulary(self, vocabulary: Sequence[str], idf: Sequence[float] | None = None) -> "Tokenizer":
        """Take `vocabulary` (most frequent first) and, for "tf_idf", each word's inverse document frequency `idf`
        as the fitted state: what `fit` learns, or a saved model holds."""
        if len(vocabulary) > self.num_words - FIRST_WORD:
            raise ValueError(f"a vocabulary of {len(vocabulary)} words does not fit in `num_words`={self.num_words} "
                             f"ids (2 are reserved for padding and unknown words)")
        if (idf is None) != (self.output_mode != "tf_idf") or (idf is not None and len(idf) != len(vocabulary)):
            raise ValueError(f"output_mode {self.output_mode!r} takes one idf weight per word of the vocabulary, "
                             f"and only tf_idf does")
        self.vocabulary_ = list(vocabulary)
        self.idf_ = None if idf is None else list(idf)
        self._ids = {word: FIRST_WORD + rank for rank, word in enumerate(self.vocabulary_)}
        return self

    def transform(self, texts: Iterable[str]) -> np.ndarray:
        """Each text's token ids (1 for a token outside the vocabulary): padded or truncated to `maxlen` (int32),
        or as a bag of `num_words` float32 values."""
        sequences = [[self._ids.get(token, OOV) for token in self.tokens(text)] for text in texts]
        if self.output_mode == "int":
            return pad_sequences(sequences, self.maxlen, self.padding, self.truncating)
        bags = np.zeros((len(sequences), self.num_words), dtype=np.float32)
        for row, ids in enumerate(sequences):
            np.add.at(bags[row], ids, 1.0)
        if self.output_mode == "multi_hot":
            return np.minimum(bags, 1.0, out=bags)
        if self.output_mode == "tf_idf":
            weights = np.zeros(self.num_words, dtype=np.float32)
            weights[OOV] = np.mean(self.idf_) if self.idf_ else 0.0
            weights[FIRST_WORD:FIRST_WORD + len(self.idf_)] = self.idf_
            bags *= weights
        return bags
