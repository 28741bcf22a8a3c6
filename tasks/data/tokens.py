"""Text generation's data (task `next_token`): a text file as tokens, a vocabulary fitted on the training part, and
windows of token ids each predicting the next token.

The file is read whole as UTF-8. Characters (`level: char`) or words and punctuation marks (`level: word`) are
the tokens; a row of the experiment's table is one token position, whose target is that token and whose inputs are
the `window` tokens before it. The held-out part is the text's tail (a hold-out without shuffling), and the
vocabulary is fitted on the tokens the training windows read and predict, so a token first seen in the tail is
"outside the vocabulary" (id 0) there, as it would be in new text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.config.schema import DatasetSpec, ExperimentSpec, TokensSpec
from kerasflow.tasks.data.table import Table, load_table, named

UNKNOWN = "<unk>"
"""How a token outside the vocabulary (id 0) is shown in predictions."""
WORD = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str, level: str, lowercase: bool) -> list[str]:
    """`text` as characters, or as words and punctuation marks (white space dropped).

    Examples
    --------
    >>> tokenize("Alice was", "char", lowercase=True)
    ['a', 'l', 'i', 'c', 'e', ' ', 'w', 'a', 's']
    >>> tokenize("'Curiouser and curiouser!' cried Alice", "word", lowercase=True)
    ["'", 'curiouser', 'and', 'curiouser', '!', "'", 'cried', 'alice']
    """
    text = text.lower() if lowercase else text
    return list(text) if level == "char" else WORD.findall(text)


def join(tokens: Sequence[str], level: str) -> str:
    """Tokens back as text: characters as they are, words with a space between."""
    return "".join(tokens) if level == "char" else " ".join(tokens)


class TokenVocabulary:
    """Token <-> id: 0 for any token outside the vocabulary, then the `num_words - 1` most frequent tokens of the
    text it was fitted on (ties: in order of first appearance), as JSON for the saved model."""

    def __init__(self, spec: TokensSpec) -> None:
        self.spec = spec

    def fit(self, tokens: Sequence[str]) -> "TokenVocabulary":
        # most_common keeps equal counts in the order they were first met.
        self.tokens_ = [UNKNOWN, *(token for token, _ in Counter(tokens).most_common(self.spec.num_words - 1))]
        return self

    def transform(self, tokens: Sequence[str]) -> np.ndarray:
        ids = {token: i for i, token in enumerate(self.tokens_) if i}
        return np.fromiter((ids.get(token, 0) for token in tokens), dtype=np.int32, count=len(tokens))

    def encode_text(self, text: str) -> np.ndarray:
        """A text (a prompt) as ids, tokenized as the training text was."""
        return self.transform(tokenize(text, self.spec.level, self.spec.lowercase))

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.spec.model_dump(mode="json"), "vocabulary": self.tokens_}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "TokenVocabulary":
        vocabulary = cls(TokensSpec.model_validate(state["tokens"]))
        vocabulary.tokens_ = list(state["vocabulary"])
        return vocabulary


def load_rows(spec: ExperimentSpec) -> Table:
    """The experiment's rows: the CSV's (:func:`load_table`), or for next_token the text file's tokens, one row
    each (`X` its token, `y` the same token: the target of the window before it)."""
    if spec.dataset.task != "next_token":
        return load_table(spec.dataset)
    tokens = read_tokens(spec.dataset, spec.preprocess.tokens)
    return Table(X=pd.DataFrame({"token": tokens}), y=pd.Series(tokens, name="token"), source=spec.dataset.file)


def read_tokens(dataset: DatasetSpec, spec: TokensSpec) -> list[str]:
    """The text file's tokens; refused, naming the file, when it cannot be read or holds too few for one window
    and its next token in both the training part and the held-out tail."""
    path = Path(dataset.file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found{named(dataset, 'file')}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder{named(dataset, 'file')}; task 'next_token' reads one text "
                        f"file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}){named(dataset, 'file')}") from None
    except OSError as exc:  # a file this user may not read
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}){named(dataset, 'file')}") from None
    tokens = tokenize(text, spec.level, spec.lowercase)
    if len(tokens) < 2 * (spec.window + 1):
        raise DataError(f"{path}: {len(tokens)} {spec.level} tokens; a window of {spec.window}{named(spec, 'window')} "
                        f"and its next token are {spec.window + 1}, needed in the training part and in the held-out "
                        f"tail: at least {2 * (spec.window + 1)}")
    return tokens


def windows(ids: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every run of `window` ids (rows) and the id after it (targets).

    Examples
    --------
    >>> X, y = windows(np.array([5, 6, 7, 8]), 2)
    >>> X.tolist(), y.tolist()
    ([[5, 6], [6, 7]], [7, 8])
    """
    X = np.lib.stride_tricks.sliding_window_view(ids[:-1], window)
    return np.ascontiguousarray(X, dtype=np.int32), ids[window:].astype(np.int32)
