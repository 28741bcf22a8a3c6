"""Reading a folder of class subfolders, images or texts, as the rows of a table (Keras' `image_dataset_from_directory`
and `text_dataset_from_directory` with `labels="inferred"`: the books' cats-vs-dogs and aclImdb folders).

Each subfolder of `dataset.file` is a class, named by the subfolder, and every image or text file in it (at any
depth) that DVC tracks (:func:`tracked_files`) is a row; files beside the subfolders are not rows (aclImdb's
`urls_pos.txt`). An image becomes its pixels, resized to `dataset.image_size` and read in `dataset.color_mode` (as
Keras' `load_img` reads it: Pillow, bilinear), channels last, one column each (`pixel_0`, ...), as a CSV of pixels
would give them: the model reshapes them to an image (`{type: reshape, target_shape: [height, width, channels]}`). A
text becomes one `text` cell, for `preprocess.text`. The class is the column `label`, which `dataset.target` names.
Rows are in the order of the sorted class names, then of the sorted paths within each, so the same folder gives the
same table everywhere.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import psutil
from pathspec import GitIgnoreSpec
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
DVC_IGNORED = GitIgnoreSpec.from_lines([".git/", ".hg/", ".dvc/"])
"""The folders DVC leaves out of any folder it tracks, besides those its `.dvcignore` files name."""


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
        """The format :meth:`to_dict` wrote; ValueError for a state no folder is read with."""
        size = state.get("image_size")
        fmt = cls(kind=state["kind"], image_size=tuple(size) if size is not None else None,
                  color_mode=state.get("color_mode"))
        images_read = fmt.image_size is not None and len(fmt.image_size) == 2 and fmt.color_mode in PIL_MODES
        if fmt.kind not in ("images", "texts") or (fmt.kind == "images") != images_read:
            raise ValueError(f"not how a folder is read: {state!r}")
        return fmt


def tracked_files(folder: Path) -> list[Path]:
    """The files under `folder` that DVC tracks when it tracks the folder (its `.dir` listing), sorted by path; a
    link to a file is listed as DVC lists it, and a link to nothing too (for the caller to refuse or skip).

    Left out as DVC leaves them out: `.git`, `.hg` and `.dvc` folders, a folder holding a `.dvc` folder (another DVC
    repository), what the `.dvcignore` files of the folders above `folder` match (gitignore's rules, each file's
    patterns relative to its folder, a deeper file's last), and what a link to a folder holds (neither follows it)."""
    rules, resolved = _dvcignore_rules(folder), folder.resolve()

    def ignored(path: Path, is_folder: bool) -> bool:  # the last pattern to match decides, a deeper file's last
        absolute, decided = resolved / path.relative_to(folder), False
        for base, spec in rules:
            include = spec.check_file(absolute.relative_to(base).as_posix() + ("/" if is_folder else "")).include
            decided = decided if include is None else include
        return decided

    def unlisted(error: OSError) -> None:
        raise DataError(f"{error.filename}: cannot be listed ({error.strerror}); DVC tracks the files under it")

    found = []
    for root, dirs, files in os.walk(folder, onerror=unlisted):  # links to folders are in `dirs`, not walked
        here = Path(root)
        dirs[:] = [name for name in dirs if not ignored(here / name, True) and not (here / name / ".dvc").is_dir()]
        found += [here / name for name in files if not ignored(here / name, False)]
    return sorted(found)


def _dvcignore_rules(folder: Path) -> list[tuple[Path, GitIgnoreSpec]]:
    """The ignore rules that apply under `folder`, each with the (resolved) folder its patterns are relative to:
    DVC's own, then each `.dvcignore` from the DVC repository's root (the nearest folder above holding `.dvc`) down
    to `folder`'s parent (DVC refuses one inside a folder it tracks). Outside a DVC repository, DVC's own only."""
    resolved = folder.resolve()
    above = list(resolved.parents)
    root = next((parent for parent in above if (parent / ".dvc").is_dir()), None)
    rules = [(resolved, DVC_IGNORED)]
    for parent in reversed(above[:above.index(root) + 1] if root is not None else []):
        ignore_file = parent / ".dvcignore"
        if ignore_file.is_file():
            rules.append((parent, GitIgnoreSpec.from_lines(ignore_file.read_text(encoding="utf-8").splitlines())))
    return rules


def _existing(files: list[Path]) -> list[Path]:
    for path in files:
        if not path.is_file():
            raise DataError(f"{path}: a link to no file (or to itself); remove it or make it a file")
    return files


def folder_kind(path: Path, where: str = "") -> Literal["images", "texts"]:
    """What `path`'s class subfolders hold, images or texts, refusing a folder with both or neither; `where` is
    the params key that named the folder, for the message."""
    first: dict[str, Path] = {}  # the first image and the first text file, in row order
    for file in (file for files in _class_members(path).values() for file in files):
        kind = "images" if file.suffix.lower() in IMAGE_SUFFIXES else "texts" if file.suffix.lower() in \
            TEXT_SUFFIXES else None
        if kind is not None and kind not in first and file.is_file():
            first[kind] = file
    if len(first) == 2:
        images, texts = (first[kind].relative_to(path).as_posix() for kind in ("images", "texts"))
        raise DataError(f"{path}: holds both image files ({', '.join(IMAGE_SUFFIXES)}), as {images}, and text files "
                        f"(.txt), as {texts}, in its class subfolders{where}; a folder's rows are all images or all "
                        f"texts: move the others out")
    if not first:
        raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) or text files (.txt) in class "
                        f"subfolders{where}; expected one subfolder a class, e.g. {path}/cats/cat.1.jpg")
    return next(iter(first))


def class_folders(path: Path) -> list[Path]:
    """`path`'s subfolders, sorted by name: one a class; not those whose name starts with a dot
    (`.ipynb_checkpoints`), which Keras skips too. A link to a folder is refused: DVC does not follow it, so the
    rows it holds would be in no md5 (dataset.json's, DVC's)."""
    folders = sorted(child for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))
    for folder in folders:
        if folder.is_symlink():
            raise DataError(f"{folder}: a link to a folder; DVC does not follow such a link, so its files would be "
                            f"rows that no md5 records: move or copy the folder there")
    return folders


def _class_members(path: Path) -> dict[str, list[Path]]:
    """Every file DVC tracks in each class subfolder of `path` (at any depth), by class, classes and files sorted."""
    members: dict[str, list[Path]] = {folder.name: [] for folder in class_folders(path)}
    for file in tracked_files(path):
        parts = file.relative_to(path).parts
        if len(parts) > 1 and parts[0] in members:  # not a file beside the class subfolders
            members[parts[0]].append(file)
    return members


def class_files(path: Path, fmt: FolderFormat) -> tuple[list[Path], list[str]]:
    """The files of a folder of class subfolders, in row order, and each one's class."""
    files, labels = [], []
    for name, members in _class_members(path).items():
        found = _existing([file for file in members if file.suffix.lower() in fmt.suffixes])
        files += found
        labels += [name] * len(found)
    return files, labels


def prediction_files(folder: Path, fmt: FolderFormat) -> list[Path]:
    """The files `kerasflow predict` reads from a folder: those of its class subfolders when they hold any, the
    rows training would read from it; else the files directly in it."""
    return class_files(folder, fmt)[0] or _existing(
        [file for file in tracked_files(folder) if file.parent == folder and file.suffix.lower() in fmt.suffixes])


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
    size, free = len(files) * height * width * fmt.channels, psutil.virtual_memory().available
    if size > free:  # as read: preparing the folds takes several times more
        raise DataError(f"{len(files)} images of {height} x {width} x {fmt.channels} values take {size / 1e9:.1f} GB "
                        f"as read, more than the {free / 1e9:.1f} GB of memory free: make dataset.image_size smaller")
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
