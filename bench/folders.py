"""Reading a folder of class subfolders of JPEGs into rows: kerasflow's `load_table` against the books' way, Keras'
`image_dataset_from_directory` gathered into one array, side by side in one run, taking turns.

A stand-in of the books' cats_vs_dogs_small/train (`--per-class` JPEGs a class, of assorted sizes around the
originals' 350 x 500, cropped from scikit-learn's sample photos), read at 180 x 180 x 3. Run from the repository
root (after `make install`):

    .venv/bin/python bench/folders.py

Both resize bilinearly, Keras with TensorFlow's `tf.image.resize` (no antialiasing), kerasflow with Pillow's, as
Keras' `load_img` (which averages the pixels it shrinks), so the pixels differ; the script prints the mean absolute
difference beside the times.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_folder(root: Path, per_class: int) -> None:
    """`per_class` JPEGs a class: random crops of 300-400 x 400-500 pixels of scikit-learn's two sample photos
    (china.jpg, flower.jpg; a class each), so the resizing works on a photo's pixels, not on noise."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    for label, photo in zip(("cat", "dog"), load_sample_images().images):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            height, width = rng.integers(300, 400), rng.integers(400, 500)
            top, left = rng.integers(0, photo.shape[0] - height), rng.integers(0, photo.shape[1] - width)
            crop = photo[top:top + height, left:left + width]
            Image.fromarray(crop).save(root / label / f"{label}.{i}.jpg", quality=90)


def kerasflow_rows(root: Path) -> np.ndarray:
    from kerasflow.tasks.config.schema import DatasetSpec
    from kerasflow.tasks.data.table import load_table

    table = load_table(DatasetSpec(file=root, target="label", task="binary", image_size=(180, 180)))
    return table.X.to_numpy().reshape(-1, 180, 180, 3)


def keras_rows(root: Path) -> np.ndarray:
    import keras

    dataset = keras.utils.image_dataset_from_directory(root, image_size=(180, 180), batch_size=32, shuffle=False,
                                                       verbose=False)
    return np.concatenate([images.numpy() for images, _ in dataset])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import keras  # noqa: F401  imported before either is timed

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "train"
        write_folder(root, args.per_class)
        times: dict[str, list[float]] = {"kerasflow": [], "keras": []}
        for _ in range(args.repeats):
            for name, read in (("kerasflow", kerasflow_rows), ("keras", keras_rows)):
                start = time.perf_counter()
                rows = read(root)
                times[name].append(time.perf_counter() - start)
                if name == "kerasflow":
                    ours = rows
                else:
                    theirs = rows
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{2 * args.per_class} JPEGs at 180 x 180 x 3, medians of {args.repeats}: "
          f"kerasflow {medians['kerasflow']:.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in times['kerasflow'])}), image_dataset_from_directory "
          f"{medians['keras']:.2f} s (runs {', '.join(f'{t:.2f}' for t in times['keras'])}): "
          f"{medians['keras'] / medians['kerasflow']:.2f}x; mean |difference| of the pixels "
          f"{np.abs(ours.astype(np.float32) - theirs).mean():.2f} of 255")


if __name__ == "__main__":
    main()
