"""A folder of class subfolders as an experiment's data (the books' cats-vs-dogs and aclImdb folders): images read as
Keras' `load_img` reads them, texts as written, the class from the subfolder; DVC's md5 of the folder in
dataset.json; `kerasflow run` on real folders through the installed command, then predictions from the saved
models for new files (`predict_csv`, what `kerasflow predict` runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import BIN, run_checked, run_cli
from PIL import Image

from kerasflow.tasks.config.errors import DataError, ParamsError
from kerasflow.tasks.config.schema import DatasetSpec, load_params
from kerasflow.tasks.data.folders import FolderFormat
from kerasflow.tasks.data.table import file_md5, load_table
from kerasflow.tasks.outputs.predict import predict_csv
from kerasflow.tasks.report.collect import dvc_tracking
from kerasflow.tasks.training.start import load_start

WORDS = {"pos": ["good", "great", "fine", "film", "plot"], "neg": ["dull", "awful", "boring", "film", "plot"]}


def pets(folder: Path, per_class: int, seed: int, classes: tuple[str, ...] = ("cats", "dogs")) -> list[Path]:
    """`per_class` noisy images of each class in `folder/<class>/`, dark cats and light dogs, of assorted sizes and
    formats (PNG, JPEG, BMP, GIF), some in a nested folder; their paths."""
    rng, written = np.random.default_rng(seed), []
    for label, level in zip(classes, (60, 190)):
        for i in range(per_class):
            height, width = rng.integers(16, 40, 2)
            pixels = np.clip(rng.normal(level, 30, (height, width, 3)), 0, 255).astype(np.uint8)
            suffix = (".png", ".jpg", ".bmp", ".gif")[i % 4]
            path = folder / label / ("nested" if i % 5 == 0 else "") / f"{label}.{i}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
            written.append(path)
    return written


def reviews(folder: Path, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for label, words in WORDS.items():
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            (folder / label / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(" ".join(rng.choice(words, 12)))


def test_images_are_read_as_keras_load_img_reads_them_a_row_each_labelled_by_its_subfolder(tmp_path):
    import keras

    files = pets(tmp_path / "pets", per_class=8, seed=0)
    (tmp_path / "pets/README.md").write_text("not a row: beside the class subfolders")
    (tmp_path / "pets/cats/notes.csv").write_text("not an image: skipped, as Keras skips it")
    for color_mode, channels in (("rgb", 3), ("grayscale", 1), ("rgba", 4)):
        spec = DatasetSpec(file=tmp_path / "pets", target="label", task="binary", image_size=(12, 10),
                           color_mode=color_mode)
        table = load_table(spec)
        assert table.X.shape == (16, 12 * 10 * channels) and table.X.columns[0] == "pixel_0"
        in_order = sorted(files)  # by class subfolder, then by path within it
        assert table.y.tolist() == [path.relative_to(tmp_path / "pets").parts[0] for path in in_order]
        for row, path in enumerate(in_order):
            expected = keras.utils.img_to_array(keras.utils.load_img(
                path, color_mode=color_mode, target_size=(12, 10), interpolation="bilinear"))
            np.testing.assert_array_equal(table.X.iloc[row].to_numpy(), expected.reshape(-1), err_msg=str(path))
    # Left out, the size is Keras' default, 256 x 256, and the colour mode rgb.
    default = load_table(DatasetSpec(file=tmp_path / "pets", target="label", task="binary"))
    assert default.X.shape == (16, 256 * 256 * 3)


def test_dot_folders_are_skipped_and_wide_images_and_links_to_nothing_refused(tmp_path):
    pets(tmp_path / "pets", per_class=2, seed=3)
    pets(tmp_path / "pets/.ipynb_checkpoints", per_class=1, seed=3)  # Keras skips it too
    spec = DatasetSpec(file=tmp_path / "pets", target="label", task="binary", image_size=(8, 8))
    assert sorted(set(load_table(spec).y)) == ["cats", "dogs"]
    wide = tmp_path / "pets/dogs/wide.png"
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(wide)
    with pytest.raises(DataError, match=r"wide.png: a 16-bit image; the rows are 8 bits a channel: convert it to "
                                        r"8 bits"):
        load_table(spec)
    wide.unlink()
    (tmp_path / "pets/dogs/gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(DataError, match=r"gone.jpg: a link to no file \(or to itself\); remove it or make it a "
                                        r"file"):
        load_table(spec)


def test_texts_are_read_whole_and_files_beside_the_class_subfolders_are_not_rows(tmp_path):
    reviews(tmp_path / "train", per_class=3, seed=0)
    (tmp_path / "train/urls_pos.txt").write_text("http://example.com\n")  # as in aclImdb/train
    (tmp_path / "train/pos/0_7.txt").write_text("Un film très bon.\nSur deux lignes.")
    table = load_table(DatasetSpec(file=tmp_path / "train", target="label", task="binary"))
    assert list(table.X.columns) == ["text"] and table.y.tolist() == ["neg"] * 3 + ["pos"] * 3
    assert table.X["text"].iloc[3] == "Un film très bon.\nSur deux lignes."


def test_a_folders_md5_and_rows_are_the_files_dvc_tracks_and_the_report_finds_it_inside_a_tracked_folder(tmp_path):
    written = pets(tmp_path / "data/pets", per_class=4, seed=1)
    (tmp_path / "data/pets/cats/notes.md").write_text("every file counts, as DVC tracks every file")
    (tmp_path / "data/other.csv").write_text("a,b\n1,2\n")
    # What DVC leaves out is neither in the md5 nor a row: a file `.dvcignore` files match (the repository's, with a
    # path from its root, and one in a folder above, with a pattern and its exception), a `.git` folder, another
    # DVC repository, and what a link to a folder holds.
    (tmp_path / ".dvcignore").write_text(f"{written[0].relative_to(tmp_path).as_posix()}\n")
    (tmp_path / "data/.dvcignore").write_text("*.gif\n!cats.3.gif\n")
    pets(tmp_path / "data/pets/dogs/.git", per_class=1, seed=2)
    pets(tmp_path / "data/pets/dogs/repo", per_class=1, seed=2)
    (tmp_path / "data/pets/dogs/repo/.dvc").mkdir()
    (tmp_path / "data/pets/dogs/elsewhere").symlink_to(tmp_path / "data/pets/dogs/repo")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    run_checked(["git", "init", "-q"], tmp_path, env)
    run_checked(["dvc", "init", "-q"], tmp_path, env)
    run_checked(["dvc", "add", "-q", "data/pets"], tmp_path, env)
    tracked = yaml.safe_load((tmp_path / "data/pets.dvc").read_text())["outs"][0]
    assert file_md5(tmp_path / "data/pets") == tracked["md5"] and tracked["nfiles"] == 7  # 8 + notes - 2
    rows = load_table(DatasetSpec(file=tmp_path / "data/pets", target="label", task="binary", image_size=(8, 8)))
    assert rows.y.tolist() == ["cats"] * 3 + ["dogs"] * 3  # cats.0.png and dogs.3.gif left out, cats.3.gif kept
    # DVC refuses a `.dvcignore` inside a folder it tracks: tracking `data`, the rules move to the repository's.
    (tmp_path / "data/pets.dvc").unlink()
    (tmp_path / "data/.dvcignore").unlink()
    with open(tmp_path / ".dvcignore", "a") as rules:
        rules.write("*.gif\n!cats.3.gif\n")
    run_checked(["dvc", "add", "-q", "data"], tmp_path, env)
    recorded = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"]
    assert file_md5(tmp_path / "data") == recorded and recorded.endswith(".dir")
    # The experiment's folder is inside the tracked one: the report checks it against DVC's entries of its files.
    dvc_file, _, in_manifest = dvc_tracking(tmp_path / "data/pets")
    assert dvc_file == tmp_path / "data.dvc" and in_manifest == file_md5(tmp_path / "data/pets")


def test_a_saved_folder_format_must_say_how_images_are_read():
    assert FolderFormat.from_dict({"kind": "images", "image_size": [8, 6], "color_mode": "rgb"}).channels == 3
    assert FolderFormat.from_dict({"kind": "texts", "image_size": None, "color_mode": None}).kind == "texts"
    for state in ({"kind": "images"}, {"kind": "images", "image_size": [8], "color_mode": "rgb"},
                  {"kind": "images", "image_size": [8, 6], "color_mode": "cmyk"}, {"kind": "sounds"},
                  {"kind": "texts", "image_size": [8, 6], "color_mode": "rgb"}):
        with pytest.raises(ValueError, match="not how a folder is read"):
            FolderFormat.from_dict(state)


def test_images_too_many_for_memory_are_refused_naming_image_size(tmp_path):
    pets(tmp_path / "pets", per_class=2, seed=3)
    spec = DatasetSpec(file=tmp_path / "pets", target="label", task="binary", image_size=(10**6, 10**6))
    with pytest.raises(DataError, match=r"^4 images of 1000000 x 1000000 x 3 values take 12000.0 GB as read, more "
                                        r"than the [0-9.]+ GB of memory free: make dataset.image_size smaller$"):
        load_table(spec)


def _experiment(file: str, layers: list[dict], **preprocess) -> dict:
    return {"dataset": {"file": file, "target": "label", "task": "binary", "image_size": [16, 16]}
            if "text" not in preprocess else {"file": file, "target": "label", "task": "binary"},
            "preprocess": preprocess, "model": {"layers": layers},
            "train": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 12, "batch_size": 8, "seed": 3},
            "evaluate": {"method": "kfold", "n_splits": 3, "seed": 3}}


CNN = [{"type": "reshape", "target_shape": [16, 16, 3]}, {"type": "rescaling", "scale": 1 / 255},
       {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
       {"type": "max_pooling2d", "pool_size": 2}, {"type": "flatten"},
       {"type": "dense", "units": 1, "activation": "sigmoid"}]
BAG_OF_WORDS = [{"type": "dense", "units": 8, "activation": "relu"},
                {"type": "dense", "units": 1, "activation": "sigmoid"}]


@pytest.mark.slow
def test_kerasflow_runs_and_predicts_folders_of_images_and_of_texts(tmp_path, prefect_server, monkeypatch):
    pets(tmp_path / "data/pets", per_class=24, seed=2)
    reviews(tmp_path / "data/reviews", per_class=24, seed=2)
    params = {"experiments": {
        "pets": _experiment("data/pets", CNN, augment={"flip": "horizontal"}),
        "reviews": _experiment("data/reviews", BAG_OF_WORDS,
                               text={"column": "text", "num_words": 12, "output_mode": "multi_hot"})},
        "sweeps": {}, "continued": {}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"PREFECT_API_URL": prefect_server}
    result = run_cli(["run", "pets", "reviews"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("pets", "reviews"):
        out = tmp_path / "results" / name
        scores = json.loads((out / "metrics.json").read_text())["accuracy"]
        assert scores["mean"] >= 0.9, (name, scores)
        assert json.loads((out / "dataset.json").read_text()) == {"file": f"data/{name}",
                                                                  "md5": file_md5(tmp_path / "data" / name)}
    # Each held-out row named by its file, under its class's subfolder.
    for name in ("pets", "reviews"):
        held_out = pd.read_csv(tmp_path / "results" / name / "predictions.csv")
        assert list(held_out.columns) == ["fold", "row", "file", "true", "predicted"] and len(held_out) == 48
        assert (held_out["file"].str.split("/").str[0] == held_out["true"]).all()
    saved = json.loads((tmp_path / "results/pets/model/preprocessing.json").read_text())
    assert saved["folder"] == {"kind": "images", "image_size": [16, 16], "color_mode": "rgb"}

    # New images in class subfolders: a prediction each, named by its path under the folder; as in training, not
    # the files beside the subfolders or those in a dot-folder.
    new = pets(tmp_path / "new", per_class=6, seed=9, classes=("a", "b"))
    pets(tmp_path / "new/.ipynb_checkpoints", per_class=1, seed=9)
    Image.new("RGB", (8, 8)).save(tmp_path / "new/beside.png")
    rows = pd.read_csv(predict_csv(tmp_path / "results/pets/model", tmp_path / "new", tmp_path / "pets.csv"))
    assert rows["file"].tolist() == sorted(path.relative_to(tmp_path / "new").as_posix() for path in new)
    truth = rows["file"].str.startswith("a/").map({True: "cats", False: "dogs"})
    assert (rows["prediction"] == truth).mean() >= 0.9
    np.testing.assert_allclose(rows["proba_cats"] + rows["proba_dogs"], 1.0, atol=1e-6)
    # A folder without class subfolders: the images in it.
    (tmp_path / "flat").mkdir()
    for path in new[:3]:
        path.rename(tmp_path / "flat" / path.name)
    flat = pd.read_csv(predict_csv(tmp_path / "results/pets/model", tmp_path / "flat", tmp_path / "flat.csv"))
    assert flat["file"].tolist() == sorted(path.name for path in new[:3])

    # One text file.
    (tmp_path / "new.txt").write_text("good great fine film")
    written = predict_csv(tmp_path / "results/reviews/model", tmp_path / "new.txt", tmp_path / "reviews.csv")
    assert pd.read_csv(written)[["file", "prediction"]].values.tolist() == [["new.txt", "pos"]]
    # Training on from the model must read the images as it did, though other sizes could give as many values.
    params["continued"] = {"more": {**params["experiments"]["pets"], "train": {
        **params["experiments"]["pets"]["train"], "init_from": "results/pets/model"}}}
    params["continued"]["more"]["dataset"] = {**params["continued"]["more"]["dataset"], "image_size": [24, 32],
                                              "color_mode": "grayscale"}
    (tmp_path / "more.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match=r"more.yaml:continued.more.dataset: 24 x 32 grayscale images, but the "
                                          r"model in results/pets/model \(.*\) was trained on 16 x 16 rgb images: "
                                          r"read the rows as it did"):
        load_start(load_params(tmp_path / "more.yaml").continued["more"], "more")
    # A CSV is not what the model reads.
    (tmp_path / "new.csv").write_text("text\ngood\n")
    with pytest.raises(DataError, match=r"new.csv: not a text file \(\.txt\); the model was trained on a folder of "
                                        r"text files \(\.txt\): give such a folder, or one such file"):
        predict_csv(tmp_path / "results/reviews/model", tmp_path / "new.csv", tmp_path / "out.csv")
