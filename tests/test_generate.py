"""Text generation (task `next_token`): windows of tokens from a text file, a vocabulary fitted on the training part,
the held-out tail scored by accuracy or perplexity, and `kerasflow generate` from the saved model.

A generated corpus (short sentences over a small vocabulary) stands in for the books' Alice text (README).
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import zipfile

import numpy as np
import pytest

from kerasflow.flows.cli import main
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.tokens import load_rows
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.report import tables
from kerasflow.tasks.report.collect import collect
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, prepare_folds, refit

pytestmark = pytest.mark.slow


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """data/corpus.txt: 200 sentences of 5 subjects, 4 verbs and 5 objects; 'Z' appears in the last line only."""
    rng = random.Random(0)
    subjects, verbs = ["the cat", "the dog", "a bird", "the queen", "alice"], ["sat on", "looked at", "ran to", "saw"]
    objects = ["the mat", "the door", "a tree", "the rabbit", "the garden"]
    text = " ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}." for _ in range(200))
    (tmp_path / "data").mkdir()
    (tmp_path / "data/corpus.txt").write_text(text + " Zzz.\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _spec(**evaluate):
    raw = {"experiments": {"chars": {
        "dataset": {"file": "data/corpus.txt", "task": "next_token"},
        "preprocess": {"tokens": {"level": "char", "window": 12, "num_words": 30, "lowercase": False}},
        "model": {"layers": [{"type": "embedding", "output_dim": 16}, {"type": "lstm", "units": 64},
                             {"type": "dense", "units": 30, "activation": "softmax"}]},
        "train": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 5, "batch_size": 64, "seed": 1},
        "evaluate": {"method": "holdout", "test_size": 0.2, "shuffle": False, **evaluate}}},
        "continued": {}, "sweeps": {}}
    return parse_params(raw).experiments["chars"]


def test_the_vocabulary_is_the_training_parts_and_the_tail_is_scored(corpus):
    spec = _spec()
    table = load_rows(spec)
    labels = encode_labels(spec, table, "chars")
    tokens = table.y.tolist()
    assert "Z" not in labels.codec.classes_ and labels.codec.classes_[0] == "<unk>"
    assert all(labels.codes[i] == 0 for i, token in enumerate(tokens) if token == "Z")
    (fold,) = prepare_folds(spec, table, labels)
    assert fold.X_train.shape[1] == 12 and fold.test_rows.min() > int(0.75 * len(tokens))
    np.testing.assert_array_equal(fold.X_test[0], labels.codes[fold.test_rows[0] - 12:fold.test_rows[0]])
    result = cross_validate(spec, [fold])
    assert result.scores[0] > 0.6  # chance is 1 in 30

    perplexity = cross_validate(_spec(metric="perplexity"), [fold]).folds[0]
    assert 1 < perplexity.score < 4
    assert math.isclose(perplexity.score, math.exp(perplexity.history["val_loss"][-1]), rel_tol=1e-3)
    assert math.isclose(perplexity.history["val_perplexity"][-1], perplexity.score, rel_tol=1e-3)


def test_the_report_reads_a_text_once_for_each_tokenization_and_shares_its_tokens_of_all(corpus):
    """Two experiments on one text file, by characters and by words: each its own rows and most frequent tokens,
    each token's share of all the text's tokens (the table lists only the most frequent)."""
    specs = {"chars": _spec(), "words": _spec().with_overrides({"preprocess.tokens.level": "word"})}
    chars, words = (e.data for e in collect(corpus / "results", specs).experiments)
    assert (chars.rows, words.rows) == (len(load_rows(specs["chars"]).y), len(load_rows(specs["words"]).y))
    assert words.rows < chars.rows and "the" in words.classes and " " in chars.classes
    shares = tables.target_summary(chars).to_dict("records")
    assert [row["share"] for row in shares] == [f"{row['rows'] / chars.rows:.1%}" for row in shares]
    assert sum(row["rows"] for row in shares) < chars.rows


def test_generate_writes_the_same_text_for_the_same_seed(corpus):
    spec = _spec()
    table = load_rows(spec)
    write_model(corpus / "model", spec, refit(spec, table, encode_labels(spec, table, "chars")))

    def command(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(list(argv))
        return status, out.getvalue().removesuffix("\n"), err.getvalue()

    def generate(*options: str) -> tuple[int, str, str]:
        return command("generate", "--model", "model", "--prompt", "the queen sat", "--length", "40", *options)

    first, again, other = generate("--seed", "3"), generate("--seed", "3"), generate("--seed", "4")
    assert first[0] == again[0] == other[0] == 0, first[2]
    assert first[1] == again[1] and len(first[1]) == 40 and first[1] != other[1]
    assert set(first[1]) <= set("".join(load_rows(spec).y.tolist()))
    # Near uniform over the model's 30 outputs, more than the text's distinct characters: only the vocabulary's drawn.
    flat = generate("--seed", "5", "--temperature", "100")
    assert flat[0] == 0 and len(flat[1]) == 40 and set(flat[1]) <= set("".join(load_rows(spec).y.tolist())), flat[2]
    status, _, err = generate("--temperature", "0")
    assert status == 2 and "--temperature above 0" in err
    status, _, err = generate("--seed", "-1")
    assert status == 2 and "--seed 0 or more" in err
    # Rows to predict are not what this model takes: refused before anything is read, pointing at generate.
    status, out, err = command("predict", "--model", "model", "--input", "data/corpus.txt", "--output", "out.csv")
    assert (status, out) == (2, "") and err == ("kerasflow: error: model: a next_token model writes text from a "
                                                "prompt: kerasflow generate --model model --prompt TEXT --length N\n")
    # A model file cut short: refused naming it, as predict refuses one.
    (corpus / "model/model.keras").write_bytes((corpus / "model/model.keras").read_bytes()[:200])
    status, out, err = generate()
    assert (status, out) == (2, "") and err.startswith("kerasflow: error: model/model.keras: cannot load the model ")
    with zipfile.ZipFile(corpus / "model/model.keras", "w") as archive:  # a zip, but not a Keras archive
        archive.writestr("notes.txt", "not a model")
    status, out, err = generate()
    assert (status, out) == (2, "") and err.startswith("kerasflow: error: model/model.keras: cannot load the model ")
    assert not (corpus / "out.csv").exists()
