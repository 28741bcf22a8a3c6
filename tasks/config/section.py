"""The base of every section of params.yaml: unknown keys refused, and each section knowing its own key.

A section validated from a file records where it sits (`params.yaml:experiments.iris.evaluate`), so a check made
later against the data (a split, a preprocessing step) still names the exact key the user edits.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

Count = Annotated[int, Field(gt=0, lt=2**31)]
"""A positive size (units, filters, batch size, epochs...): below 2**31, as TensorFlow holds such sizes in 32 bits; a
larger one is refused by name here instead of failing deep inside TensorFlow or NumPy."""

Seed = Annotated[int, Field(ge=0, lt=2**32)]
"""A random seed, 0 to 2**32 - 1: the range NumPy's and scikit-learn's generators take."""


class AtKey(ValueError):
    """A validator's complaint about one key below the section it checks (`train.loss` from the experiment).

    Pydantic places a model validator's error on the whole section;
    :func:`kerasflow.tasks.config.messages.describe` appends `key`, so the
    message still names the exact key as DVC spells it.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key

class Section(BaseModel):
    # Unknown keys are errors: a misspelt `epoch:` must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    # Where the section sits in the params file and which data file its experiment reads (and whether that file has
    # a header row), set once the file is validated: checks made later against the data (splits, preprocessing)
    # still name the key the user edits and the file's lines.
    _where: str = PrivateAttr(default="")
    _data: str = PrivateAttr(default="")
    _header: bool = PrivateAttr(default=True)

    def key(self, name: str) -> str:
        """`name`'s full key, `params.yaml:experiments.iris.evaluate.n_splits`, or `name` for a spec built in code.

        Examples
        --------
        >>> from kerasflow.tasks.config.schema import EvaluateSpec
        >>> EvaluateSpec().key("n_splits")
        'n_splits'
        """
        return f"{self._where}.{name}" if self._where else name

    @property
    def located(self) -> bool:
        """Whether the section came from a params file (and :meth:`key` gives its full key)."""
        return bool(self._where)

    @property
    def data_file(self) -> str:
        """The data file of the experiment this section belongs to ("" for a spec built in code)."""
        return self._data

    @property
    def data_header(self) -> bool:
        """Whether that data file has a header row (`dataset.header`; True for a spec built in code)."""
        return self._header

    def locate(self, where: str, data: str, header: bool = True) -> None:
        """Record this section's key prefix, data file and whether the file has a header row, and its
        subsections' (layers included)."""
        self._where, self._data, self._header = where, data, header
        for name in type(self).model_fields:
            value = getattr(self, name)
            items = enumerate(value) if isinstance(value, list) else [(None, value)]
            for index, item in items:
                if isinstance(item, Section):
                    item.locate(f"{where}.{name}" + ("" if index is None else f"[{index}]"), data, header)


class Configured(BaseModel):
    """A Keras object with arguments, as params.yaml gives one, ``{name: max_norm, max_value: 3}``: the arguments
    are the Keras class's own, checked against its signature (:func:`kerasflow.tasks.config.keras_names.
    check_configured`) rather than listed here."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
