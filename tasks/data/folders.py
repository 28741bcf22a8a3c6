"""Reading a folder of class subfolders, images or texts, as the rows of a table (Keras' `image_dataset_from_directory`
and `text_dataset_from_directory` with `labels="inferred"`: the books' cats-vs-dogs and aclImdb folders).

Each subfolder of `dataset.file` is a class, named by the subfolder, and every image or text file in it (at any
depth) is a row; files beside the subfolders are not rows (aclImdb's `urls_pos.txt`). An image becomes its pixels,
resized to `dataset.image_size` and read in `dataset.color_mode` (as Keras' `load_img` reads it: Pillow, bilinear),
channels last, one column each (`pixel_0`, ...), as a CSV of pixels would give them: the model reshapes them to an
image (`{type: reshape, target_shape: [height, width, channels]}`). A text becomes one `text` cell, for
`preprocess.text`. The class is the column `label`, which `dataset.target` names. Rows are in the order of the
sorted class names, then of the sorted paths within each, so the same folder gives the same table everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from kerasflow.tasks.config.errors import DataError

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
"""The image files a folder's rows are read from: the formats Keras' `image_dataset_from_directory` reads."""
TEXT_SUFFIXES = (".txt",)
"""The text files, as Keras' `text_dataset_from_directory` reads them."""
LABEL = "label"
"""The column holding each row's class: the name of its subfolder."""
TEXT = "text"
"""A text file's column."""
WIDE_MODES = {"I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I;16N": "16-bit", "I": "32-bit integer",
              "F": "32-bit float"}
"""Pillow's modes of more than 8 bits a channel: refused rather than clipped to 255."""
DEFAULT_IMAGE_SIZE = (256, 256)
"""[height, width] when `dataset.image_size` is left out, as Keras' `image_dataset_from_directory`."""
PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
"""`dataset.color_mode` as Pillow's image modes, as Keras' `load_img` converts."""


@dataclass(frozen=True)
class FolderFormat:
    """How a folder's files become a row: what the saved model keeps, so `kerasflow predict` reads new files the
    same way."""

    kind: Literal["images", "texts"]
    image_size: tuple[int, int] | None = None
    """[height, width], images only."""
    color_mode: str | None = None
    """grayscale, rgb or rgba, images only."""

    @property
    def suffixes(self) -> tuple[str, ...]:
        return IMAGE_SUFFIXES if self.kind == "images" else TEXT_SUFFIXES

    @property
    def channels(self) -> int:
        """Values a pixel: 1 (grayscale), 3 (rgb) or 4 (rgba); images only."""
        return len(PIL_MODES[self.color_mode])

    @property
    def description(self) -> str:
        """`image files (.bmp, ...)` or `text files (.txt)`."""
        return f"{self.kind[:-1]} files ({', '.join(self.suffixes)})"

    @property
    def one_file(self) -> str:
        """`an image file (.bmp, ...)` or `a text file (.txt)`."""
        return f"{'an' if self.kind == 'images' else 'a'} {self.kind[:-1]} file ({', '.join(self.suffixes)})"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> "FolderFormat":
        size = state.get("image_size")
        return cls(kind=state["kind"], image_size=tuple(size) if size is not None else None,
                   color_mode=state.get("color_mode"))


def files_under(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files below `folder`, at any depth, whose suffix (in any case) is one of `suffixes`, sorted by path; a
    link to nothing under such a name is refused, not skipped."""
    found = sorted(path for path in folder.rglob("*") if path.suffix.lower() in suffixes)
    for path in found:
        if not path.is_file() and not path.is_dir():
            raise DataError(f"{path}: a link to no file (or to itself); remove it or make it a file")
    return [path for path in found if path.is_file()]


def folder_kind(path: Path, where: str = "") -> Literal["images", "texts"]:
    """What `path`'s class subfolders hold, images or texts, refusing a folder with both or neither; `where` is
    the params key that named the folder, for the message."""
    images = texts = False
    for file in (file for folder in class_folders(path) for file in folder.rglob("*")):  # until both are found
        suffix = file.suffix.lower()
        images = images or (suffix in IMAGE_SUFFIXES and file.is_file())
        texts = texts or (suffix in TEXT_SUFFIXES and file.is_file())
        if images and texts:
            break
    if images and texts:
        raise DataError(f"{path}: holds both image files ({', '.join(IMAGE_SUFFIXES)}) and text files (.txt) in its "
                        f"class subfolders{where}; a folder's rows are all images or all texts")
    if not images and not texts:
        raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) or text files (.txt) in class "
                        f"subfolders{where}; expected one subfolder a class, e.g. {path}/cats/cat.1.jpg")
    return "images" if images else "texts"


def class_folders(path: Path) -> list[Path]:
    """`path`'s subfolders, sorted by name: one a class; not those whose name starts with a dot
    (`.ipynb_checkpoints`), which Keras skips too."""
    return sorted(child for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))


def class_files(path: Path, fmt: FolderFormat) -> tuple[list[Path], list[str]]:
    """The files of a folder of class subfolders, in row order, and each one's class."""
    files, labels = [], []
    for folder in class_folders(path):
        found = files_under(folder, fmt.suffixes)
        files += found
        labels += [folder.name] * len(found)
    return files, labels


def read_class_folder(path: Path, fmt: FolderFormat) -> pd.DataFrame:
    """The rows of a folder of class subfolders: the features (pixels or text) and `label`, each row's class."""
    files, labels = class_files(path, fmt)
    frame = read_files(files, fmt)
    frame[LABEL] = labels
    return frame


def read_files(files: list[Path], fmt: FolderFormat) -> pd.DataFrame:
    """The feature columns of `files`, a row each: an image's pixels, channels last, or a text."""
    if fmt.kind == "texts":
        return pd.DataFrame({TEXT: [_read_text(file) for file in files]})
    height, width = fmt.image_size
    pixels = np.empty((len(files), height * width * fmt.channels), dtype=np.uint8)
    for row, file in enumerate(files):
        pixels[row] = _read_image(file, fmt).reshape(-1)
    return pd.DataFrame(pixels, columns=[f"pixel_{i}" for i in range(pixels.shape[1])])


def _read_image(file: Path, fmt: FolderFormat) -> np.ndarray:
    """One image in `fmt.color_mode`, resized to `fmt.image_size` bilinearly when it is another size."""
    height, width = fmt.image_size
    try:
        with Image.open(file) as image:
            mode = image.mode
            if mode not in WIDE_MODES:
                image = image.convert(PIL_MODES[fmt.color_mode])
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataError(f"{file}: cannot be read as an image ({type(exc).__name__}: {exc})") from None
    # Pillow's conversion to 8 bits would clip such values at 255, not scale them.
    raise DataError(f"{file}: a {WIDE_MODES[mode]} image; the rows are 8 bits a channel: convert it to 8 bits")


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{file}: cannot be read ({exc.strerror})") from None
