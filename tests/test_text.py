"""Text classifiers: token ids fitted inside each fold, the books' Embedding models, and predict on new sentences."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.schema import ExperimentSpec, TextSpec, parse_params
from kerasflow.tasks.data.preprocess import Preprocessor
from kerasflow.tasks.data.split import Split, make_splits
from kerasflow.tasks.data.table import file_md5, load_table
from kerasflow.tasks.data.text import OOV, PADDING, Tokenizer
from kerasflow.tasks.data.word_vectors import read_word_vectors
from kerasflow.tasks.outputs.predict import predict_csv
from kerasflow.tasks.outputs.results import load_model, write_dataset, write_model
from kerasflow.tasks.outputs.saved_model import PREPROCESSING_FILE
from kerasflow.tasks.training.evaluate import (
    cross_validate,
    encode_labels,
    fit_split,
    prepare_folds,
    refit,
)
from kerasflow.tasks.training.models import build_model
from kerasflow.tasks.training.train import fit_model, predict

POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "enjoyable", "brilliant", "lovely"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dreadful", "dull", "poor", "horrible"]
FILLER = ["the", "film", "movie", "plot", "acting", "was", "really", "quite", "and", "i", "thought", "it",
          "story", "cast", "very", "a", "with", "music"]
UNSEEN = "zyzzyva"  # in no generated sentence

CNN = [{"type": "embedding", "output_dim": 8},
       {"type": "conv1d", "filters": 8, "kernel_size": 3, "activation": "relu"},
       {"type": "max_pooling1d", "pool_size": 2},
       {"type": "flatten"},
       {"type": "dense", "units": 1, "activation": "sigmoid"}]
LSTM = [{"type": "embedding", "output_dim": 8},
        {"type": "lstm", "units": 8},
        {"type": "dense", "units": 1, "activation": "sigmoid"}]
# Chollet's IMDB classifier on multi-hot vectors (Deep Learning with Python, 3.4).
BOOKS_MLP = [{"type": "dense", "units": 16, "activation": "relu"},
             {"type": "dense", "units": 16, "activation": "relu"},
             {"type": "dense", "units": 1, "activation": "sigmoid"}]


def sentences(n: int, seed: int = 0) -> pd.DataFrame:
    """`n` labelled reviews: filler words around one or two words of the label's sentiment, half of each label."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = list(rng.choice(FILLER, size=rng.integers(3, 9)))
        for word in rng.choice(POSITIVE if label == "pos" else NEGATIVE, size=rng.integers(1, 3)):
            words.insert(int(rng.integers(0, len(words) + 1)), str(word))
        rows.append((" ".join(words).capitalize() + rng.choice([".", "!", "..."]), label))
    return pd.DataFrame(rows, columns=["review", "sentiment"])


def text_experiment(file: str, layers: list[dict], header: bool = True, text: dict | None = None) -> ExperimentSpec:
    """A binary sentiment experiment on `file` (the target first when it has no header), 3-fold stratified;
    `text` replaces preprocess.text's `maxlen: 12`."""
    dataset = ({"file": file, "target": "sentiment", "task": "binary"} if header else
               {"file": file, "header": False, "target": 0, "task": "binary"})
    raw = {"experiments": {"reviews": {
        "dataset": dataset,
        "preprocess": {"text": {"column": "review" if header else 1, "num_words": 40, **(text or {"maxlen": 12})}},
        "model": {"layers": layers},
        "train": {"optimizer": "adam", "learning_rate": 0.02, "epochs": 5, "batch_size": 16, "seed": 3},
        "evaluate": {"n_splits": 3, "stratify": True, "seed": 3},
    }}, "continued": {}, "sweeps": {}}
    return parse_params(raw).experiments["reviews"]


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "reviews.csv"
    sentences(240).to_csv(path, index=False)
    return path


def _rows(spec: ExperimentSpec):
    table = load_table(spec.dataset)
    return table, encode_labels(spec, table)


def test_the_vocabulary_comes_from_the_training_rows_only(reviews, tmp_path):
    frame = pd.read_csv(reviews)
    test_index = np.arange(200, 240)
    frame.loc[210, "review"] = f"{UNSEEN} " + frame.loc[210, "review"]
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    spec = text_experiment(str(tmp_path / "reviews.csv"), CNN)
    table, labels = _rows(spec)
    split = Split(np.arange(200), test_index)

    fold, preprocessor = fit_split(spec, table, labels, split)
    vocabulary = preprocessor.tokenizer_.vocabulary_
    assert UNSEEN not in vocabulary and len(vocabulary) <= 40 - 2
    assert fold.X_train.dtype == fold.X_test.dtype == np.int32 and fold.X_test.shape == (40, 12)
    row = list(test_index).index(210)
    first_word = np.flatnonzero(fold.X_test[row] != PADDING)[0]
    assert fold.X_test[row, first_word] == OOV  # the test-only word is out of the vocabulary
    # The check has teeth: fitted on every row, the same word would have an id of its own.
    everything = Preprocessor.from_spec(spec.preprocess).fit(table.X)
    assert UNSEEN in everything.tokenizer_.vocabulary_

    # Rewriting every held-out sentence changes nothing the model trains on.
    spoiled = frame.copy()
    spoiled.loc[test_index, "review"] = "an entirely different set of words"
    spoiled.to_csv(tmp_path / "spoiled.csv", index=False)
    other = text_experiment(str(tmp_path / "spoiled.csv"), CNN)
    spoiled_fold, spoiled_pre = fit_split(other, *_rows(other), split)
    np.testing.assert_array_equal(fold.X_train, spoiled_fold.X_train)
    assert spoiled_pre.tokenizer_.vocabulary_ == vocabulary


@pytest.mark.parametrize("padding, truncating, expected", [
    ("pre", "pre", [[4, 5, 6], [0, 0, 2]]),
    ("post", "pre", [[4, 5, 6], [2, 0, 0]]),
    ("pre", "post", [[2, 3, 4], [0, 0, 2]]),
    ("post", "post", [[2, 3, 4], [2, 0, 0]]),
])
def test_padding_and_truncation_to_maxlen(padding, truncating, expected):
    text = TextSpec(column="review", num_words=10, maxlen=3, padding=padding, truncating=truncating)
    X = pd.DataFrame({"review": ["Apple banana cherry date elder", "apple"]})
    pre = Preprocessor(text=text).fit(X)
    assert pre.tokenizer_.vocabulary_ == ["apple", "banana", "cherry", "date", "elder"]  # by count, then a-z
    assert pre.transform(X).tolist() == expected


def test_lowercase_and_punctuation_and_empty_texts():
    text = TextSpec(column="review", num_words=10, maxlen=4, lowercase=False)
    pre = Preprocessor(text=text).fit(pd.DataFrame({"review": ["Good good, GOOD!", None]}))
    assert pre.tokenizer_.vocabulary_ == ["GOOD", "Good", "good"]
    assert pre.transform(pd.DataFrame({"review": ["good... Good?", "", None]})).tolist() == [
        [0, 0, 4, 3], [0, 0, 0, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("layers", [CNN, LSTM], ids=["conv1d", "lstm"])
def test_the_books_text_models_learn_the_sentiment_in_kfold(reviews, layers):
    spec = text_experiment(str(reviews), layers)
    table, labels = _rows(spec)
    folds = prepare_folds(spec, table, labels)
    result = cross_validate(spec, folds).summary()
    assert result["metric"] == "accuracy" and result["n_folds"] == 3 and not result["stacked"]
    assert result["mean"] > 0.85, result  # chance is 0.5: the two halves use disjoint sentiment words


def test_every_text_layer_is_seeded_and_the_model_takes_token_ids(reviews):
    spec = text_experiment(str(reviews), CNN)
    assert spec.model.num_words == 40

    def weights(seed: int) -> list[np.ndarray]:
        random.seed(seed * 1000)  # Keras' unseeded layers would draw from here: ours must not
        return [keras.ops.convert_to_numpy(w) for w in build_model(spec.model, 12, seed).weights]

    model = build_model(spec.model, 12, seed=1)
    assert model.inputs[0].dtype == "int32" and model.layers[0].input_dim == 40
    for a, b in zip(weights(1), weights(1)):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(weights(1)[0], weights(2)[0])


@pytest.fixture(scope="module")
def saved(reviews, tmp_path_factory) -> dict:
    """The Conv1D model refitted on every row and saved as `kerasflow run` saves it, with and without a header."""
    root = tmp_path_factory.mktemp("text-model")
    headerless = root / "headerless.csv"
    pd.read_csv(reviews)[["sentiment", "review"]].to_csv(headerless, header=False, index=False)
    models = {}
    for name, spec in (("header", text_experiment(str(reviews), CNN)),
                       ("headerless", text_experiment(str(headerless), CNN, header=False))):
        table, labels = _rows(spec)
        models[name] = write_model(root / name, spec, refit(spec, table, labels))
    return models


NEW = ["What a wonderful and brilliant film!", "Boring, dull and awful.",
       f"A {UNSEEN} with superb music", f"{UNSEEN} {UNSEEN}"]


def test_predict_on_new_sentences_round_trips_through_the_saved_folder(saved, reviews, tmp_path):
    model_dir = saved["header"]
    state = json.loads((model_dir / PREPROCESSING_FILE).read_text())
    assert state["features"]["columns"] == ["review"]
    assert state["features"]["text"]["maxlen"] == 12 and UNSEEN not in state["features"]["vocabulary"]

    pd.DataFrame({"review": NEW}).to_csv(tmp_path / "new.csv", index=False)
    written = pd.read_csv(predict_csv(model_dir, tmp_path / "new.csv", tmp_path / "pred.csv"))
    assert list(written.columns) == ["prediction", "proba_neg", "proba_pos"]
    assert written["prediction"].tolist()[:3] == ["pos", "neg", "pos"]

    # The same numbers as the loaded model on the saved tokenizer's ids, the unseen word read as OOV.
    model, preprocessor, _ = load_model(model_dir)
    ids = preprocessor.transform(pd.DataFrame({"review": NEW}))
    assert ids[3].tolist() == [PADDING] * 10 + [OOV, OOV]
    np.testing.assert_allclose(written["proba_pos"], predict(model, ids).reshape(-1), rtol=1e-5)

    # The training file itself, target column and all, is read the same way.
    again = pd.read_csv(predict_csv(model_dir, reviews, tmp_path / "again.csv"))
    assert float(np.mean(again["prediction"] == pd.read_csv(reviews)["sentiment"])) > 0.9


def test_a_headerless_text_file_trains_and_predicts_by_position(saved, reviews, tmp_path):
    rows = pd.read_csv(reviews)
    pd.DataFrame({"text": NEW}).to_csv(tmp_path / "new.csv", header=False, index=False)
    written = pd.read_csv(predict_csv(saved["headerless"], tmp_path / "new.csv", tmp_path / "pred.csv"))
    assert written["prediction"].tolist()[:3] == ["pos", "neg", "pos"]
    # The same rows, vocabulary and seeds as the file with a header: the same model.
    pd.DataFrame({"review": NEW}).to_csv(tmp_path / "named.csv", index=False)
    named = pd.read_csv(predict_csv(saved["header"], tmp_path / "named.csv", tmp_path / "named_pred.csv"))
    np.testing.assert_allclose(written["proba_pos"], named["proba_pos"], atol=1e-3)
    # With the target column in its place (first), the training rows themselves.
    rows[["sentiment", "review"]].to_csv(tmp_path / "train.csv", header=False, index=False)
    again = pd.read_csv(predict_csv(saved["headerless"], tmp_path / "train.csv", tmp_path / "again.csv"))
    assert float(np.mean(again["prediction"] == rows["sentiment"])) > 0.9


def test_a_missing_or_extra_column_is_refused_naming_it(reviews, tmp_path):
    spec = text_experiment(str(reviews), CNN).with_overrides({"preprocess.text.column": "comment"})
    # Refused as the data is loaded, naming the file.
    with pytest.raises(DataError, match=r"reviews.csv: params.yaml:experiments.reviews.preprocess.text.column "
                                        r"'comment' not "
                                        r"found\. Columns found: review \(besides the target\)"):
        _rows(spec)

    pd.read_csv(reviews).assign(stars=3).to_csv(tmp_path / "wide.csv", index=False)
    wide = text_experiment(str(tmp_path / "wide.csv"), CNN)
    with pytest.raises(DataError, match=r"also has the column\(s\) \['stars'\]: remove them"):
        prepare_folds(wide, *_rows(wide))


def test_predict_refuses_a_file_without_the_text_column(saved, tmp_path):
    pd.DataFrame({"comment": NEW}).to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(DataError, match=r"new.csv: missing column\(s\) \['review'\]"):
        predict_csv(saved["header"], tmp_path / "new.csv", tmp_path / "pred.csv")
    assert not (tmp_path / "pred.csv").exists()


@pytest.mark.parametrize("ngrams", [1, 2])
@pytest.mark.parametrize("output_mode", ["multi_hot", "count", "tf_idf"])
def test_bags_of_words_equal_keras_text_vectorization_on_the_same_vocabulary(output_mode, ngrams):
    training = sentences(60)["review"].tolist()
    text = TextSpec(column="review", num_words=60, output_mode=output_mode, ngrams=ngrams)
    tokenizer = Preprocessor(text=text).fit(pd.DataFrame({"review": training})).tokenizer_
    vocabulary = tokenizer.vocabulary_
    assert (ngrams == 1) == all(" " not in token for token in vocabulary), vocabulary
    texts = [*NEW, "", *training[:5]]
    ours = tokenizer.transform(texts)
    layer = keras.layers.TextVectorization(output_mode=output_mode, ngrams=ngrams if ngrams > 1 else None,
                                           vocabulary=vocabulary, idf_weights=tokenizer.idf_)
    assert ours.shape == (len(texts), 60) and ours.dtype == np.float32 and not ours[:, PADDING].any()
    # Keras' columns are the out-of-vocabulary token's, then the vocabulary's: ours from id 1 (OOV) on, and ids
    # past a vocabulary smaller than num_words - 2 stay 0.
    words_end = OOV + 1 + len(vocabulary)
    np.testing.assert_allclose(ours[:, OOV:words_end], keras.ops.convert_to_numpy(layer(texts)), rtol=1e-6)
    assert not ours[:, words_end:].any()
    assert ours[NEW.index(f"{UNSEEN} {UNSEEN}"), OOV] > 0


def test_tf_idf_weights_are_those_keras_fits():
    # Every word a different count, so that both rank the vocabulary alike (they break ties differently).
    corpus = ["red red red red green green green blue blue amber", "red green blue", "red green", "red",
              "green blue red", "violet violet"]
    tokenizer = Tokenizer(num_words=10, output_mode="tf_idf").fit(corpus)
    layer = keras.layers.TextVectorization(output_mode="tf_idf")
    layer.adapt(corpus)
    assert layer.get_vocabulary()[1:] == tokenizer.vocabulary_
    texts = [*corpus, "red unknown words", ""]
    np.testing.assert_allclose(tokenizer.transform(texts)[:, OOV:OOV + len(layer.get_vocabulary())],
                               keras.ops.convert_to_numpy(layer(texts)), rtol=1e-6)


@pytest.mark.parametrize("output_mode", ["multi_hot", "tf_idf"])
def test_the_books_multi_hot_mlp_learns_the_sentiment_and_predicts_from_its_folder(reviews, tmp_path, output_mode):
    spec = text_experiment(str(reviews), BOOKS_MLP, text={"output_mode": output_mode, "ngrams": 2})
    table, labels = _rows(spec)
    result = cross_validate(spec, prepare_folds(spec, table, labels)).summary()
    assert result["n_folds"] == 3 and result["stacked"]  # every fold's bags are num_words wide: they stack
    assert result["mean"] > 0.85, result

    model_dir = write_model(tmp_path / "model", spec, refit(spec, table, labels))
    state = json.loads((model_dir / PREPROCESSING_FILE).read_text())["features"]
    assert state["text"]["output_mode"] == output_mode and (state["idf"] is not None) == (output_mode == "tf_idf")
    pd.DataFrame({"review": NEW}).to_csv(tmp_path / "new.csv", index=False)
    written = pd.read_csv(predict_csv(model_dir, tmp_path / "new.csv", tmp_path / "pred.csv"))
    assert written["prediction"].tolist()[:3] == ["pos", "neg", "pos"]
    # The same numbers as the loaded model on the saved vocabulary's bags.
    model, preprocessor, _ = load_model(model_dir)
    bags = preprocessor.transform(pd.DataFrame({"review": NEW}))
    np.testing.assert_allclose(written["proba_pos"], predict(model, bags).reshape(-1), rtol=1e-5)


def write_word_vectors(path: Path, width: int = 8) -> dict[str, np.ndarray]:
    """A GloVe-format file: the sentiment words on two opposite directions, the filler words small and random;
    "absent" is a vocabulary word the file lacks."""
    rng = np.random.default_rng(5)
    vectors = {word: np.full(width, 1.0) for word in POSITIVE} | {word: np.full(width, -1.0) for word in NEGATIVE}
    vectors |= {word: rng.normal(0, 0.1, width) for word in FILLER if word != "music"}
    path.write_text("".join(f"{word} {' '.join(f'{v:.5f}' for v in vector)}\n" for word, vector in vectors.items()))
    return {word: np.round(vector, 5).astype(np.float32) for word, vector in vectors.items()}


FROZEN_GLOVE = [{"type": "embedding", "output_dim": 8, "trainable": False},
                {"type": "global_average_pooling1d"},
                {"type": "dense", "units": 1, "activation": "sigmoid"}]


def test_pretrained_word_vectors_start_each_folds_embedding_from_its_own_vocabulary(reviews, tmp_path):
    written = write_word_vectors(tmp_path / "glove.txt")
    layers = [{**FROZEN_GLOVE[0], "weights": str(tmp_path / "glove.txt")}, *FROZEN_GLOVE[1:]]
    spec = text_experiment(str(reviews), layers)
    table, labels = _rows(spec)
    folds = prepare_folds(spec, table, labels)
    for fold, split_vocabulary in zip(folds, (fit_split(spec, table, labels, s)[1].tokenizer_.vocabulary_
                                              for s in make_splits(spec.evaluate, labels.codes))):
        assert fold.embedding.shape == (40, 8)
        assert not fold.embedding[PADDING].any() and not fold.embedding[OOV].any()
        for rank, word in enumerate(split_vocabulary):
            np.testing.assert_array_equal(fold.embedding[2 + rank], written.get(word, np.zeros(8, np.float32)))
        assert "music" in split_vocabulary  # a word the file lacks: zeros, as the book's matrix has

    # Frozen, the vectors are the model's after training; the sentiment words' directions carry the labels.
    model, _ = fit_model(spec, folds[0].X_train, folds[0].y_train, embedding=folds[0].embedding)
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], folds[0].embedding)
    result = cross_validate(spec, folds).summary()
    assert result["mean"] > 0.85, result
    trainable = spec.with_overrides({"model.layers": [{**layers[0], "trainable": True}, *layers[1:]]})
    model, _ = fit_model(trainable, folds[0].X_train, folds[0].y_train, embedding=folds[0].embedding)
    assert not np.array_equal(model.layers[0].get_weights()[0], folds[0].embedding)

    # dataset.json records the file's md5, as no DVC stage depends on it (a sweep's stage then reruns on a new one).
    write_dataset(tmp_path, spec)
    recorded = json.loads((tmp_path / "dataset.json").read_text())["weights"]
    assert recorded == {(tmp_path / "glove.txt").as_posix(): file_md5(tmp_path / "glove.txt")}

    # The saved model holds its vectors: predict needs the file no more.
    model_dir = write_model(tmp_path / "model", spec, refit(spec, table, labels))
    (tmp_path / "glove.txt").unlink()
    pd.DataFrame({"review": NEW}).to_csv(tmp_path / "new.csv", index=False)
    written_predictions = pd.read_csv(predict_csv(model_dir, tmp_path / "new.csv", tmp_path / "pred.csv"))
    assert written_predictions["prediction"].tolist()[:3] == ["pos", "neg", "pos"]


def test_a_word_vectors_file_that_cannot_start_the_embedding_is_one_line_naming_the_key(reviews, tmp_path):
    def refused(path: Path, output_dim: int = 8) -> str:
        layers = [{**FROZEN_GLOVE[0], "output_dim": output_dim, "weights": str(path)}, *FROZEN_GLOVE[1:]]
        spec = text_experiment(str(reviews), layers)
        with pytest.raises(ParamsError) as info:
            prepare_folds(spec, *_rows(spec))
        return str(info.value)

    key = "params.yaml:experiments.reviews.model.layers[0].weights: "
    assert refused(tmp_path / "nowhere.txt") == (f"{key}{tmp_path / 'nowhere.txt'}: file not found; save the word "
                                                 f"vectors (e.g. GloVe's glove.6B.100d.txt) there once, nothing "
                                                 f"downloads at run time")
    write_word_vectors(tmp_path / "glove.txt")
    assert refused(tmp_path / "glove.txt", output_dim=16) == (
        f"{key}{tmp_path / 'glove.txt'} holds vectors of 8 numbers, but the embedding's output_dim is 16: make "
        f"them equal")
    (tmp_path / "ragged.txt").write_text("good 1 2 3\nbad 1 2\n")
    assert refused(tmp_path / "ragged.txt", 3) == (f"{key}{tmp_path / 'ragged.txt'}: line 2 has 2 numbers, the lines "
                                                   f"before it 3")
    (tmp_path / "words.txt").write_text("good 1 2\nbad one two\n")
    assert refused(tmp_path / "words.txt", 2).endswith(": line 2 is not a word followed by 2 numbers (GloVe's format)")
    (tmp_path / "infinite.txt").write_text("good 1 2\nbad 1 1e40\n")
    assert refused(tmp_path / "infinite.txt", 2).endswith(": line 2 holds a number that is not finite (nan, inf, or "
                                                          "too large for 32 bits)")
    (tmp_path / "folder").mkdir()
    assert refused(tmp_path / "folder", 2).startswith(f"{key}{tmp_path / 'folder'}: cannot be read (Is a directory)")
    # A file that has none of the vocabulary's words would start a frozen embedding at zeros: refused.
    (tmp_path / "other.txt").write_text("".join(f"zz{i} {i} {i}\n" for i in range(5)))
    assert refused(tmp_path / "other.txt", 2).startswith(f"{key}{tmp_path / 'other.txt'} has none of the ")


def test_word_vectors_read_glove_words_with_spaces_and_word2vecs_header(tmp_path):
    """GloVe's 840B file has tokens with spaces in them; word2vec's and fastText's .vec files start with a line
    of counts."""
    (tmp_path / "glove.txt").write_text("good 1 2\n. . . 3 4\nfilm 5 6\n")
    (tmp_path / "fasttext.vec").write_text("3 2\ngood 1 2\n. . . 3 4\nfilm 5 6\n")
    for name in ("glove.txt", "fasttext.vec"):
        vectors = read_word_vectors(tmp_path / name, 2, "weights")
        assert list(vectors.rows) == ["good", ". . .", "film"]
        matrix, found = vectors.matrix(["film", "plot", "good"], num_words=6)
        assert found == 2 and matrix.tolist() == [[0, 0], [0, 0], [5, 6], [0, 0], [1, 2], [0, 0]]


def test_a_text_model_folder_saved_before_bags_of_words_loads_and_predicts_as_before(saved, tmp_path):
    """Folders saved before output_mode, ngrams and idf existed have none of them: token ids, as then."""
    legacy = tmp_path / "legacy"
    shutil.copytree(saved["header"], legacy)
    state = json.loads((legacy / PREPROCESSING_FILE).read_text())
    for key in ("output_mode", "ngrams"):
        del state["features"]["text"][key]
    del state["features"]["idf"]
    (legacy / PREPROCESSING_FILE).write_text(json.dumps(state))
    new = pd.DataFrame({"review": NEW})
    np.testing.assert_array_equal(load_model(legacy)[1].transform(new), load_model(saved["header"])[1].transform(new))


def test_a_tf_idf_bag_of_texts_with_no_known_word_is_all_zeros_not_nan():
    tokenizer = Tokenizer(num_words=5, output_mode="tf_idf").fit(["", "   "])
    assert tokenizer.vocabulary_ == [] and tokenizer.idf_ == []
    assert tokenizer.transform(["anything at all", ""]).tolist() == [[0.0] * 5] * 2
