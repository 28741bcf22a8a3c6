"""A saved model folder (``results/<experiment>/model``): its file names, and reading it without Keras.

:func:`kerasflow.tasks.outputs.results.write_model` writes the folder; ``preprocessing.json`` holds the fitted
preprocessing and how the training CSV was laid out (header row or not, which column was the target; a training
folder's image size and colour mode), so new rows
are read the same way and a user needs no ``params.yaml`` to predict. Nothing here imports Keras until a model is
loaded (:func:`load_keras_model`): a wrong folder or a wrong input file is refused in about a second instead of after
TensorFlow's import.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.data.folders import FolderFormat
from kerasflow.tasks.data.preprocess import LabelCodec, Preprocessor
from kerasflow.tasks.data.tokens import TokenVocabulary

MODEL_FILE = "model.keras"
PREPROCESSING_FILE = "preprocessing.json"


@dataclass(frozen=True)
class SavedModel:
    """A model folder's preprocessing and the training CSV's layout: all that checking new rows needs."""

    path: Path
    preprocessor: Preprocessor | TokenVocabulary
    """The fitted preprocessing; a next_token model's vocabulary and tokenization."""
    codec: LabelCodec | None
    task: str
    targets: tuple[str, ...]
    """The target column(s) of the training CSV: names, or 0-based indices without a header row."""
    header: bool
    window: dict | None = None
    """A series model's windows: `lookback`, `horizon`, `sampling_rate`, `steps_out` and the other `columns` each
    window reads (None otherwise)."""
    folder: FolderFormat | None = None
    """How the training folder's images or texts were read (None for a CSV): new files are read the same way."""
    parted_at_zero: bool = False
    """A binary model trained with a hinge loss, whose output parts the classes at 0, not 0.5
    (:func:`kerasflow.tasks.training.hinge.parted_at_zero`)."""

    @property
    def features(self) -> list[str]:
        return list(self.preprocessor.columns_)


def read_saved(model_dir: str | Path) -> SavedModel:
    """Read a model folder's preprocessing, refusing a path that is not a model folder, with the reason."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError(f"{model_dir}: model folder not found; expected the folder `kerasflow run` writes, "
                        f"e.g. results/<experiment>/model")
    absent = [name for name in (MODEL_FILE, PREPROCESSING_FILE) if not (model_dir / name).is_file()]
    if absent:
        raise DataError(f"{model_dir}: not a saved model folder: {', '.join(absent)} missing")
    try:
        state = json.loads((model_dir / PREPROCESSING_FILE).read_text())
        codec = LabelCodec.from_dict(state["labels"]) if state["labels"] is not None else None
        reads = TokenVocabulary if state["task"] == "next_token" else Preprocessor
        return SavedModel(path=model_dir, preprocessor=reads.from_dict(state["features"]), codec=codec,
                          task=state["task"], targets=_targets(state["target"]), header=bool(state["header"]),
                          window=state.get("window"),
                          folder=FolderFormat.from_dict(state["folder"]) if state.get("folder") else None,
                          parted_at_zero=bool(state.get("parted_at_zero", False)))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{model_dir / PREPROCESSING_FILE}: not a kerasflow preprocessing file "
                        f"({type(exc).__name__}: {exc})") from None


def _targets(target: str | list[str]) -> tuple[str, ...]:
    """`preprocessing.json`'s target: one column, or a list of several (a multi-output regression)."""
    return tuple(map(str, target)) if isinstance(target, list) else (str(target),)


def load_keras_model(model_dir: str | Path):
    """The folder's Keras model (`keras.Model`), uncompiled, loaded with Keras' `safe_mode`: no code from the file
    is run; a file Keras cannot load (truncated, not a Keras archive) is a DataError naming it. Keras is imported
    here, on the first load."""
    import keras

    path = Path(model_dir) / MODEL_FILE
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as exc:  # each Keras raises for a bad file
        raise DataError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None
