"""Pretrained bases (`type: pretrained`): a `keras.applications` network without its top, as the books' transfer
learning uses VGG16, with its weights read from a local file (this test saves one: nothing is downloaded).

Frozen, the base keeps the file's weights while the head on top of it learns; `trainable_from` fine-tunes from that
layer on and leaves the earlier ones as the file has them; the saved model predicts as the trained one. The bad
inputs (an input below the base's minimum size, a missing weights file, one of another architecture, 'imagenet', an
unknown layer name) are in tests/faults/test_bad_input.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.preprocess import Preprocessor
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.outputs.saved_model import load_keras_model
from kerasflow.tasks.training.evaluate import FinalModel
from kerasflow.tasks.training.models import build_model
from kerasflow.tasks.training.train import fit_model, predict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A VGG16 base's weights (seeded, not ImageNet's: the file's format is what matters), saved as a user saves
    ImageNet's once where they can be downloaded."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "vgg16_notop.weights.h5"
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    base.save_weights(path)
    return path


def _spec(weights: str | None, **pretrained):
    raw = {"experiments": {"img": {
        "dataset": {"file": "data/img.csv", "target": "y", "task": "binary"},
        "model": {"layers": [{"type": "reshape", "target_shape": [32, 32, 3]},
                             {"type": "pretrained", "name": "vgg16", "weights": weights, "pooling": "avg",
                              **pretrained},
                             {"type": "dense", "units": 1, "activation": "sigmoid"}]},
        "train": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 2, "batch_size": 8, "seed": 3}}},
        "continued": {}, "sweeps": {}}
    return parse_params(raw).experiments["img"]


def _images(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """`n` 32x32x3 images as rows of pixels scaled to [0, 1]; class 1 brighter on the left half."""
    rng = np.random.default_rng(0)
    X = rng.random((n, 32, 32, 3), dtype=np.float32) * 0.5
    y = np.arange(n) % 2
    X[y == 1, :, :16] += 0.5
    return X.reshape(n, -1), y.astype(np.float32).reshape(-1, 1)


def _by_layer(model) -> dict[str, list[np.ndarray]]:
    base = model.layers[1]  # after the reshape
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in base.layers if layer.weights}


def test_a_frozen_base_keeps_its_files_weights_while_the_head_learns(weights_file):
    spec = _spec(str(weights_file))
    X, y = _images()
    loaded = _by_layer(build_model(spec.model, X.shape[1], spec.train.seed))
    model, trained = fit_model(spec, X, y)
    after = _by_layer(model)
    assert loaded.keys() == after.keys() and len(after) == 13  # VGG16's 13 convolutions
    for name in loaded:
        for before, now in zip(loaded[name], after[name]):
            np.testing.assert_array_equal(before, now, err_msg=name)
    head_before = build_model(spec.model, X.shape[1], spec.train.seed).layers[-1].get_weights()
    assert not np.allclose(head_before[0], model.layers[-1].get_weights()[0])
    assert len(trained.history["loss"]) == 2


def test_trainable_from_fine_tunes_that_block_and_leaves_the_earlier_ones(weights_file):
    spec = _spec(str(weights_file), trainable_from="block5_conv1")
    X, y = _images()
    loaded = _by_layer(build_model(spec.model, X.shape[1], spec.train.seed))
    after = _by_layer(fit_model(spec, X, y)[0])
    moved = {name for name in loaded if not all(np.array_equal(a, b) for a, b in zip(loaded[name], after[name]))}
    assert moved == {"block5_conv1", "block5_conv2", "block5_conv3"}


def test_weights_null_draws_the_same_base_from_the_same_seed_and_the_saved_model_predicts_alike(tmp_path):
    spec = _spec(None)
    X, y = _images()
    first, second = (build_model(spec.model, X.shape[1], spec.train.seed).get_weights() for _ in range(2))
    other = build_model(spec.model, X.shape[1], spec.train.seed + 1).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))

    model, _ = fit_model(spec, X, y)
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(X.shape[1])])
    final = FinalModel(model=model, preprocessor=Preprocessor().fit(frame), codec=None)
    saved = load_keras_model(write_model(tmp_path / "model", spec, final))
    np.testing.assert_allclose(predict(saved, X), predict(model, X), atol=1e-5)
