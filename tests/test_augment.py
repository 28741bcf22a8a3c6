"""Image augmentation (`preprocess.augment`): Keras' random layers and featurewise statistics inside the model.

The random transformations change training batches only: held-out scoring and predictions see the images as they
are, so a trained model predicts the same with or without them. They are seeded from train.seed. The featurewise
statistics and the ZCA matrix are fitted on the training rows the model sees, and saved with it. The report shows a
few augmented training images.
"""

from __future__ import annotations

import numpy as np
import pytest

from kerasflow.tasks.config.errors import ParamsError
from kerasflow.tasks.config.schema import parse_params
from kerasflow.tasks.data.table import load_table
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.outputs.saved_model import load_keras_model
from kerasflow.tasks.report.collect import collect
from kerasflow.tasks.report.html import render_html
from kerasflow.tasks.training.evaluate import encode_labels, refit
from kerasflow.tasks.training.models import augmented_examples, build_model
from kerasflow.tasks.training.train import fit_model, predict

pytestmark = pytest.mark.slow

RANDOM = {"rotation": 0.1, "shift": 0.1, "flip": "horizontal", "zoom": 0.1}


def _params(augment: dict | None, file: str = "data/digits.csv") -> dict:
    """The bundled 8x8 digits as images: reshape, a small convolution, a softmax."""
    experiment = {
        "dataset": {"file": file, "target": "digit", "task": "multiclass"},
        "preprocess": {"scale": "minmax", **({"augment": augment} if augment is not None else {})},
        "model": {"layers": [{"type": "reshape", "target_shape": [8, 8, 1]},
                             {"type": "conv2d", "filters": 4, "kernel_size": 3},
                             {"type": "flatten"},
                             {"type": "dense", "units": 10, "activation": "softmax"}]},
        "train": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 2, "batch_size": 32, "seed": 4},
        "evaluate": {"n_splits": 2, "seed": 4}}
    return {"experiments": {"digits": experiment}, "continued": {}, "sweeps": {}}


def _spec(augment: dict | None):
    return parse_params(_params(augment)).experiments["digits"]


@pytest.fixture
def digits(bundled_data, monkeypatch):
    monkeypatch.chdir(bundled_data.parent)
    table = load_table(_spec(None).dataset)
    X = (table.X.to_numpy(dtype=np.float32) / 16.0)[:400]
    y = table.y.to_numpy()[:400].astype(np.int32)
    return X, y


def test_the_random_transformations_leave_predictions_alone(digits):
    X, y = digits
    augmented = _spec(RANDOM)
    model, _ = fit_model(augmented, X, y)
    plain = build_model(_spec(None).model, X.shape[1], 4)
    plain.set_weights(model.get_weights())  # the random layers hold no weights
    np.testing.assert_allclose(predict(model, X), predict(plain, X), atol=1e-6)
    assert len(model.layers) == len(plain.layers) + 4


def test_the_same_seed_draws_the_same_augmented_batches(digits):
    images = digits[0][:6].reshape(-1, 8, 8, 1)
    spec = _spec(RANDOM).preprocess.augment
    first, second = augmented_examples(spec, images, 3, 4), augmented_examples(spec, images, 3, 4)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, augmented_examples(spec, images, 3, 5))
    assert not np.allclose(first[:, 0], images)  # each copy is transformed
    assert not np.allclose(first[:, 0], first[:, 1])  # and each draw differs


def test_featurewise_statistics_and_zca_are_fitted_on_the_training_rows_and_saved(digits, tmp_path):
    X, y = digits
    spec = _spec({"featurewise_center": True, "featurewise_std_normalization": True, "zca_whitening": True,
                  "zca_epsilon": 1e-5})
    train = X[:300]
    model, _ = fit_model(spec, train, y[:300])
    normalization = model.get_layer("featurewise_standardization")
    np.testing.assert_allclose(np.ravel(normalization.mean), [train.mean()], rtol=1e-5)
    np.testing.assert_allclose(np.ravel(normalization.variance), [train.var()], rtol=1e-5)
    # ZCA whitening: every direction the standardised training pixels vary in by more than a trace (variance over
    # 1e-3, far above zca_epsilon) has variance 1 after it, and none more than 1.
    upto = model.layers.index(model.get_layer("zca_whitening")) + 1
    whitened = np.asarray(train.reshape(-1, 8, 8, 1))
    for layer in model.layers[:upto]:
        whitened = np.asarray(layer(whitened))
    after = np.linalg.eigvalsh(np.cov(whitened, rowvar=False, bias=True))
    before = np.linalg.eigvalsh(np.cov((train - train.mean()) / train.std(), rowvar=False, bias=True))
    assert after.max() < 1.01 and np.sum(after > 0.98) >= np.sum(before > 1e-3) > 30, (before, after)

    table = load_table(spec.dataset)
    final = refit(spec, table, encode_labels(spec, table, "digits"))
    saved = load_keras_model(write_model(tmp_path / "model", spec, final))
    rows = final.preprocessor.transform(table.X.iloc[:50])
    np.testing.assert_allclose(predict(saved, rows), predict(final.model, rows), atol=1e-5)


def test_the_report_shows_augmented_training_images(digits, tmp_path):
    spec = parse_params(_params(RANDOM)).experiments["digits"]
    report = collect(tmp_path / "results", {"digits": spec})
    (images,) = [e.augmented for e in report.experiments]
    assert images.shape == (3, 6, 8, 8, 1) and images.min() >= 0 and images.max() <= 1
    assert "Augmented training images" in render_html(report)


@pytest.mark.parametrize("augment, layers, expected", [
    ({"rotation": 0.1}, [{"type": "dense", "units": 10, "activation": "softmax"}], "transforms images"),
    ({"featurewise_center": True}, [{"type": "dense", "units": 64}, {"type": "reshape", "target_shape": [8, 8, 1]},
                                    {"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax"}],
     "the reshape to [height, width, channels] must be model.layers[0]"),
], ids=["no-image", "featurewise-after-a-dense"])
def test_augmentation_needs_an_image_model(augment, layers, expected):
    raw = _params(augment)
    raw["experiments"]["digits"]["model"]["layers"] = layers
    with pytest.raises(ParamsError, match="params.yaml:experiments.digits.preprocess.augment: .*" + expected.replace(
            "[", r"\[").replace("]", r"\]")):
        parse_params(raw)
