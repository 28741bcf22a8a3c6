"""Dotted keys that change an experiment (`train.epochs`, `model.layers[0].units`, `model.widths`): what a sweep's
configs are made of."""

from __future__ import annotations

import difflib
import math
from typing import Any, get_args

from kerasflow.tasks.config.layers import LayerSpec

INITIALIZED_LAYERS: frozenset[str] = frozenset(
    get_args(layer.model_fields["type"].annotation)[0] for layer in get_args(get_args(LayerSpec)[0])
    if "initializer" in layer.model_fields)
"""The `type` of each layer that has a kernel `initializer`: the layers `model.initializer` sets."""


def extremes(kind: str, values: list) -> list:
    """The values a distribution can give that are worth validating: all of a list, the ends of a range.

    Ray Tune's ranges exclude their upper end, so the largest value that can be drawn is tried instead.

    Examples
    --------
    >>> extremes("randint", [1, 5]), extremes("uniform", [0.0, 1.0])[1] < 1.0
    ([1, 4], True)
    """
    if kind in ("grid", "choice"):
        return list(values)
    low, high = values
    if kind == "randint":
        return [int(low), int(high) - 1]
    return [float(low), math.nextafter(float(high), float(low))]

def split_key(key: str) -> list[str | int]:
    """`'model.layers[0].units'` -> `['model', 'layers', 0, 'units']`."""
    parts: list[str | int] = []
    for piece in key.split("."):
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            parts.append(int(index))
            rest = rest.removeprefix("[")
    return parts


def dotted_leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping's leaves by dotted key, lists as they are (an empty mapping has none).

    Examples
    --------
    >>> dotted_leaves({"train": {"epochs": 5, "optimizer": {}}, "model": {"layers": [{"type": "dense"}]}})
    {'train.epochs': 5, 'model.layers': [{'type': 'dense'}]}
    """
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        leaves |= dotted_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return leaves


def join_key(parts: list[str | int]) -> str:
    """:func:`split_key`'s inverse: `['model', 'layers', 0, 'units']` -> `'model.layers[0].units'`."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).removeprefix(".")


def with_widths(layers: list[dict], widths: list[int]) -> list[dict]:
    """Replace the hidden Dense layers (all but the last Dense) with one Dense per width."""
    dense = [i for i, layer in enumerate(layers) if layer["type"] == "dense"]
    if len(dense) < 2:
        raise ValueError("model.widths needs a model with a hidden Dense layer and an output Dense layer")
    if not isinstance(widths, list) or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ValueError(f"model.widths must be a list of positive integers. Received: {widths!r}")
    template = layers[dense[0]]
    hidden = [{**template, "units": width} for width in widths]
    return layers[: dense[0]] + hidden + layers[dense[-2] + 1:]


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], sparse: bool = False) -> dict[str, Any]:
    """`raw` (an experiment as a mapping) with the dotted keys of `overrides` replaced, in place; see
    :meth:`kerasflow.tasks.config.schema.ExperimentSpec.with_overrides`.

    `raw` is the whole experiment (every key, defaults included, as a spec dumps it), where a key it lacks is an
    unknown key; or, `sparse`, the experiment as a params file writes it, which leaves out keys at their defaults:
    those are added, with any mapping above them (the overrides were validated against the whole experiment).

    Examples
    --------
    >>> apply_overrides({"train": {"epochs": 10}}, {"train.epochs": 5})
    {'train': {'epochs': 5}}
    >>> apply_overrides({"model": {"layers": [{"type": "dense", "units": 1}]}},
    ...                 {"train.learning_rate": 0.1, "model.initializer": "zeros"}, sparse=True)
    {'model': {'layers': [{'type': 'dense', 'units': 1, 'initializer': 'zeros'}]}, 'train': {'learning_rate': 0.1}}
    """
    for key, value in overrides.items():
        if key == "model.widths":
            raw["model"]["layers"] = with_widths(raw["model"]["layers"], value)
            continue
        if key == "model.initializer":
            for layer in raw["model"]["layers"]:
                if layer["type"] in INITIALIZED_LAYERS:
                    layer["initializer"] = value
            continue
        *parents, last = split_key(key)
        node: Any = raw
        for depth, part in enumerate([*parents, last]):
            above = join_key(parents[:depth])
            if isinstance(node, list) and isinstance(part, int) and not -len(node) <= part < len(node):
                raise KeyError(f"{above} has {len(node)} items ({above}[0] to [{len(node) - 1}]), no [{part}]")
            if isinstance(node, dict) and part not in node and not sparse and not (
                    depth == len(parents) and "name" in node):  # a named object's arguments: any Keras takes
                close = difflib.get_close_matches(str(part), list(node), n=1)
                raise KeyError(f"no key {key!r} in the experiment" + (f" (did you mean {close[0]!r}?)" if close
                                                                     else ""))
            if depth == len(parents):
                break
            if sparse and isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node[part]
            here = join_key(parents[:depth + 1])
            below = key.removeprefix(here).removeprefix(".")
            if isinstance(node, str):  # `train.optimizer: adam`, a name: its arguments are not keys yet
                raise KeyError(f"{here} is the name {node!r}, which has no {below!r} to set: write it as "
                               f"{{name: {node}, {below}: <its value>}}")
            if node is None:  # `train.early_stopping`, not set: nothing below it to set
                raise KeyError(f"{here} is not set in the experiment, so it has no {below!r} to set: write it "
                               f"there, or sweep it whole")
        node[last] = value
    return raw
