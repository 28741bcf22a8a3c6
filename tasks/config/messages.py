"""Pydantic's validation errors, and PyYAML's, as one line each naming the key as DVC spells it:
`params.yaml:experiments.iris.train.epoch: unknown key 'epoch'; did you mean 'epochs'?`."""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from kerasflow.tasks.config.section import AtKey


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: what it expected and where (`line 3, column 14`)."""
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join(filter(None, (getattr(exc, "context", None), getattr(exc, "problem", None)))) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(problem.split()) + where

SHOWN_CHARACTERS = 200
"""The most characters of a received value echoed in a message: the line stays short whatever the input."""


def shown(value: object) -> str:
    """`value`'s repr, cut to :data:`SHOWN_CHARACTERS` characters.

    Examples
    --------
    >>> shown("epochs"), len(shown("x" * 5000))
    ("'epochs'", 201)
    """
    return cut(repr(value))


def cut(text: str) -> str:
    """`text` cut to :data:`SHOWN_CHARACTERS` characters, an ellipsis marking the cut."""
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS] + "…"


def one_line(text: str) -> str:
    r"""`text` with its line breaks and other unprintable characters written as escapes, so that a message
    naming a key or a value the user wrote stays one line.

    Examples
    --------
    >>> one_line("params.yaml:experiments.a\nb: unknown key")
    'params.yaml:experiments.a\\nb: unknown key'
    """
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


OTHER_NAMES = {"init": "initializer", "nb_epoch": "epochs", "nb_filter": "filters", "output_dim": "units"}
"""Keras 1's names, which the books' listings use, for the keys kerasflow names as Keras 2 and 3 do."""

NO_KEY = {
    "input_dim": "the input's shape comes from the data",
    "input_shape": "the input's shape comes from the data",
    "metrics": "the score is evaluate.metric, and each epoch's history holds the loss and it",
}
"""Keys a listing writes that have no key in params.yaml, and why."""


def describe_all(errors: list[dict], raw: dict, source: str, root: type[BaseModel]) -> str:
    """Every problem of a validation (:func:`describe`), one after another. A required key reported missing is left
    out where an unknown key beside it is its misspelling (`epoch:` for `epochs:`): that key's message says so."""
    misspelt = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            parent = tuple(error["loc"][:-1])
            if meant := _meant(str(error["loc"][-1]), _allowed_keys(root, parent)):
                misspelt.add((*parent, meant))
    return "; ".join(describe(error, raw, source, root) for error in errors
                     if not (error["type"] == "missing" and tuple(error["loc"]) in misspelt))


def _meant(bad: str, allowed: list[str]) -> str | None:
    """The allowed key `bad` most likely means: its Keras 2 name (:data:`OTHER_NAMES`), else the closest spelling.

    Examples
    --------
    >>> _meant("init", ["activation", "initializer", "type", "units"]), _meant("unit", ["type", "units"])
    ('initializer', 'units')
    """
    if OTHER_NAMES.get(bad) in allowed:
        return OTHER_NAMES[bad]
    return next(iter(difflib.get_close_matches(bad, allowed, n=1)), None)


def describe(error: dict, raw: dict, source: str, root: type[BaseModel]) -> str:
    """One line per problem: `params.yaml:experiments.x.train.epochs: <what is wrong>. Received: <value>`."""
    loc = _key_path(error["loc"], raw)
    message = cut(error["msg"].removeprefix("Value error, "))  # pydantic's may repeat the whole value
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, AtKey):
        return f"{source}:{'.'.join(filter(None, (loc, cause.key)))}: {cause}"
    if error["type"] == "union_tag_invalid":
        # The layer's `type:` is what is wrong, not the whole layer.
        received = (error.get("ctx") or {}).get("tag")
        return f"{source}:{loc}.type: {message}. Received: {shown(received)}"
    if not loc:
        return f"{source}: {message}"
    if error["type"] == "extra_forbidden":
        bad = str(error["loc"][-1])
        allowed = _allowed_keys(root, error["loc"][:-1])
        hint = _meant(bad, allowed)
        message = f"unknown key {shown(bad)}" + (f"; did you mean {hint!r}?" if hint else
                                                f": {NO_KEY[bad]}." if bad in NO_KEY else ".")
        if allowed:
            message += f" Allowed here: {', '.join(allowed)}"
        return f"{source}:{loc}: {message}"
    received = error.get("input")
    # A whole section echoed back would bury the problem; an empty one is the problem.
    hidden = error["type"] == "missing" or (isinstance(received, dict) and received)
    echoed = "" if hidden else f". Received: {shown(received)}"
    return f"{source}:{loc}: {message}{echoed}"

def _key_path(loc: tuple, raw: dict) -> str:
    """Render pydantic's location as the YAML key path, dropping union tags like `dense`."""
    parts: list[str] = []
    node: object = raw
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
        elif item == "[key]":
            continue  # pydantic's marker for "the key itself is wrong", already named by the previous part
        elif isinstance(node, dict) and item in node:
            parts.append(cut(one_line(str(item))))
            node = node[item]
        elif isinstance(node, dict) and node.get("type") == item:
            continue  # the discriminator's tag, not a key of the file
        else:
            parts.append(cut(one_line(str(item))))
            node = None
    return ".".join(parts)

def _allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys accepted at `loc`, found by walking the schema's types from `root` along pydantic's location."""
    target: object = root
    for item in loc:
        target = _optional_model(target)
        origin, args = get_origin(target), get_args(target)
        if isinstance(target, type) and issubclass(target, BaseModel):
            field = target.model_fields.get(item)
            if field is None:
                return []
            target = field.annotation
        elif origin is dict:
            target = args[1]
        elif origin is list:
            target = args[0]
        elif origin is Annotated:  # the layer union: pydantic puts the `type` tag in the location
            members = get_args(args[0])
            target = next((m for m in members if get_args(m.model_fields["type"].annotation) == (item,)), None)
        else:
            return []
    target = _optional_model(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return sorted(target.model_fields)
    return []

def _optional_model(annotation: object) -> object:
    """`TextSpec | None` -> `TextSpec`: an optional section's keys are the section's own."""
    if get_origin(annotation) in (Union, types.UnionType):
        models = [arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
        if len(models) == 1 and set(get_args(annotation)) <= {models[0], type(None)}:
            return models[0]
    return annotation
