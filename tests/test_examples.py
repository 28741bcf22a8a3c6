"""examples/: the books' listings as params files, each headed by its chapter. Every file validates, and each of
its experiments runs in smoke mode (2 folds or its hold-out split, 1 epoch) on a small generated stand-in of its
book's dataset (the bundled MNIST digits where the book uses MNIST)."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from kerasflow.flows.cli import smoke
from kerasflow.tasks.config.schema import load_params
from kerasflow.tasks.data.tokens import load_rows
from kerasflow.tasks.outputs.results import write_model
from kerasflow.tasks.training.evaluate import cross_validate, encode_labels, prepare_folds, refit
from kerasflow.tasks.training.start import load_start

pytestmark = pytest.mark.slow

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SOURCES = ("Deep Learning", "Long Short-Term Memory Networks", "keras.io")
"""Where the listings come from: the books (Deep Learning With Python, ... for Time Series Forecasting, Long
Short-Term Memory Networks With Python...) and keras.io's examples."""


def _write(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def moving_square(rng: np.random.Generator, rightward: bool, size: int = 16) -> list[int]:
    """One video of the book's moving square: `size` frames of `size` x `size` pixels, a lit pixel that starts at
    the left edge (or the right) on a random row and moves one column a frame, up or down a row at random."""
    frames = np.zeros((size, size, size), dtype=int)
    row = int(rng.integers(size))
    for t in range(size):
        frames[t, row, t if rightward else size - 1 - t] = 1
        row = int(np.clip(row + rng.integers(-1, 2), 0, size - 1))
    return frames.reshape(-1).tolist()


def write_stand_ins(data: Path, bundled: Path) -> None:
    """Stand-ins of the books' datasets that ship nowhere, in their shapes: sonar (60 numeric columns, R/M),
    ionosphere (34, g/b), CIFAR-10 (3072 pixels of 32x32x3, 10 labels), IMDB reviews (text, 0/1; and as aclImdb's
    folder of .txt files), cats-vs-dogs (a folder of JPEGs a class, of assorted sizes), the Jena weather
    station's 10-minute rows (a date and 14 readings), Alice (a text of random words), card transactions (Time,
    V1..V28, Amount, and Class, 1 in 20 of them fraud), the moving square's videos (16 frames of 16 x 16); every
    16th of the bundled MNIST digits, the bundled sunspots, macroeconomic series and breast-cancer table (every
    other row of it as its "new rows"); beside data/, a seeded VGG16 base's weights file where the transfer-learning
    listing expects ImageNet's, and random 100-dimensional vectors for half the IMDB stand-in's words where the GloVe
    listing expects GloVe's."""
    rng = np.random.default_rng(0)
    for name, width, classes in (("sonar", 60, "RM"), ("ionosphere", 34, "gb")):
        _write(data / f"{name}.csv", [f"f{i}" for i in range(width)] + ["class"],
               [[f"{v:.4f}" for v in rng.random(width)] + [classes[i % 2]] for i in range(60)])
    _write(data / "cifar10.csv", [f"pixel{i}" for i in range(3072)] + ["label"],
           [list(rng.integers(0, 256, 3072)) + [i % 10] for i in range(60)])
    words = [f"word{i}" for i in range(300)]
    _write(data / "imdb.csv", ["review", "sentiment"],
           [[" ".join(rng.choice(words, size=int(rng.integers(5, 60)))), i % 2] for i in range(60)])
    jena = ["p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)", "VPmax (mbar)", "VPact (mbar)",
            "VPdef (mbar)", "sh (g/kg)", "H2OC (mmol/mol)", "rho (g/m**3)", "wv (m/s)", "max. wv (m/s)", "wd (deg)"]
    _write(data / "jena_climate.csv", ["Date Time", *jena],
           [[f"01.01.2009 {i // 6 % 24:02d}:{i % 6 * 10:02d}:00", *(f"{v:.2f}" for v in rng.normal(10, 3, len(jena)))]
            for i in range(2000)])
    _write(data / "creditcard.csv", ["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"],
           [[i, *(f"{v:.4f}" for v in rng.normal(0, 1, 28)), f"{rng.exponential(80):.2f}", int(i % 20 == 0)]
            for i in range(200)])
    _write(data / "moving_square.csv", ["direction", *(f"p{i}" for i in range(16 ** 3))],
           [[("right", "left")[i % 2], *moving_square(rng, rightward=i % 2 == 0)] for i in range(60)])
    from PIL import Image

    for label, level in (("cat", 70), ("dog", 180)):  # cats_vs_dogs_small/train: JPEGs of assorted sizes
        (data / "cats_vs_dogs_small/train" / label).mkdir(parents=True)
        for i in range(10):
            pixels = rng.normal(level, 40, (*rng.integers(150, 220, 2), 3)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(data / f"cats_vs_dogs_small/train/{label}/{label}.{i}.jpg")
    for label in ("neg", "pos"):  # aclImdb/train: a review a file, urls_*.txt beside the class subfolders
        (data / "aclImdb/train" / label).mkdir(parents=True)
        for i in range(30):
            review = " ".join(rng.choice(words[:100] if label == "neg" else words[50:150], size=40))
            (data / f"aclImdb/train/{label}/{i}_{1 if label == 'neg' else 9}.txt").write_text(review)
        (data / f"aclImdb/train/urls_{label}.txt").write_text("http://www.imdb.com/title/tt0000000/usercomments\n")
    (data / "alice.txt").write_text(" ".join(" ".join(rng.choice(words[:40], size=12)) + "." for _ in range(40)))
    for name in ("breast_cancer.csv", "sunspots.csv", "macrodata.csv"):
        shutil.copy(bundled / name, data / name)
    header, *rows = (bundled / "breast_cancer.csv").read_text().splitlines(keepends=True)
    (data / "breast_cancer_new.csv").write_text(header + "".join(rows[1::2]))
    import keras

    (data.parent / "weights").mkdir()
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(
        data.parent / "weights/vgg16_notop.weights.h5")
    (data.parent / "weights/glove.6B.100d.txt").write_text(
        "".join(f"{word} {' '.join(f'{v:.4f}' for v in rng.normal(0, 0.3, 100))}\n" for word in words[::2]))
    header, *digits = (bundled / "mnist_5k.csv").read_text().splitlines(keepends=True)
    (data / "mnist_5k.csv").write_text(header + "".join(digits[::16]))  # the file is in label order


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory, bundled_data) -> Path:
    root = tmp_path_factory.mktemp("examples")
    (root / "data").mkdir()
    write_stand_ins(root / "data", bundled_data)
    return root


def test_at_least_twelve_book_listings_each_headed_by_its_chapter():
    assert len(EXAMPLES) >= 12
    for path in EXAMPLES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and any(source in first for source in SOURCES), f"{path.name}: {first!r}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_each_listing_validates_and_runs_in_smoke_mode(path, stand_ins, monkeypatch):
    """Every experiment, continued ones last, each from the model its file's earlier experiment saves."""
    monkeypatch.chdir(stand_ins)
    shutil.copy(path, stand_ins / path.name)
    params = load_params(stand_ins / path.name)
    starts = {spec.train.init_from for spec in params.continued.values()}
    for name, spec in params.every_experiment.items():
        quick = smoke(spec)
        start = load_start(quick, name)
        table = load_rows(quick)
        labels = encode_labels(quick, table, name, start)
        result = cross_validate(quick, prepare_folds(quick, table, labels, start))
        assert result.folds and all(math.isfinite(fold.score) for fold in result.folds), name
        if f"results/{name}/model" in starts:
            write_model(Path(f"results/{name}/model"), quick, refit(quick, table, labels, start=start))
