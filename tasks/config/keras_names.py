"""Names of Keras objects in params.yaml (optimizers, losses, activations, initializers), checked against Keras
itself so that a typo fails before anything runs, with the allowed names listed."""

from __future__ import annotations

import difflib


def known_names(kind: str) -> list[str]:
    """The string identifiers Keras accepts for `kind`, to list them when a name is wrong."""
    import keras

    module = getattr(keras, kind)
    skip = {"get", "serialize", "deserialize", "Optimizer", "Loss", "Initializer", "LossScaleOptimizer"}
    names = set()
    for name in dir(module):
        if name.startswith("_") or name in skip:
            continue
        if kind == "optimizers" and name[0].isupper():
            names.add(name.lower())  # Keras looks optimizers up by lower-cased class name: "adamw", "rmsprop"
        elif kind == "initializers" and name[0].isupper():
            names.add(_snake(name))
        elif kind in ("activations", "losses") and name[0].islower():
            names.add(name)
    return sorted(names)

def _snake(name: str) -> str:
    out = [name[0].lower()]
    for prev, ch in zip(name, name[1:]):
        out.append(("_" + ch.lower()) if ch.isupper() and prev.islower() else ch.lower())
    return "".join(out)

def check_name(kind: str, value: str) -> str:
    """Resolve `value` the way Keras will at build time, so a typo fails before anything runs."""
    import keras

    getter = getattr(keras, kind).get
    try:
        getter(value)
    except (ValueError, TypeError):
        allowed = known_names(kind)
        hint = difflib.get_close_matches(value, allowed, n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        singular = {"losses": "loss"}.get(kind, kind[:-1])
        raise ValueError(f"unknown {singular} {value!r}.{suggestion} Allowed: {', '.join(allowed)}") from None
    return value

def activation_name(value: str) -> str:
    return check_name("activations", value)

def initializer_name(value: str) -> str:
    return check_name("initializers", value)
