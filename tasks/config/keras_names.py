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


LEGACY_OPTIMIZER_ARGUMENTS = {
    "lr": "Keras 1/2's name of learning_rate, read as learning_rate",
    "decay": "Keras 1/2's per-step learning-rate decay, run as Keras 3's inverse-time decay: "
             "learning_rate / (1 + decay * step)",
}
"""Arguments the books' listings give an optimizer that Keras 3 no longer takes, and what kerasflow makes of them."""


def optimizer_arguments(name: str) -> list[str]:
    """The arguments Keras' optimizer `name` takes (its constructor's, less `name` and `**kwargs`)."""
    import inspect

    import keras

    signature = inspect.signature(type(keras.optimizers.get(name)).__init__)
    return [arg for arg, param in signature.parameters.items()
            if arg not in ("self", "name") and param.kind is not param.VAR_KEYWORD]


def check_optimizer(value: object) -> object:
    """A `train.optimizer`: a Keras optimizer's name, or a mapping of its name and arguments (`{name: sgd,
    learning_rate: 0.1, momentum: 0.8}`); each argument is checked against the optimizer's own signature and tried,
    so a bad one fails before anything runs. Raises :class:`AtKey` naming the argument."""
    from kerasflow.tasks.config.section import AtKey

    if isinstance(value, str):
        return check_name("optimizers", value)
    if not isinstance(value, dict):
        raise ValueError("must be an optimizer's name or a mapping {name: ..., <argument>: ...}")
    if "name" not in value:
        raise AtKey("name", "is required: the optimizer's name (sgd, adam, rmsprop...). Received: none")
    try:
        name = check_name("optimizers", value["name"])
    except ValueError as exc:
        raise AtKey("name", str(exc)) from None
    allowed = optimizer_arguments(name)
    args = {key: item for key, item in value.items() if key != "name"}
    for key in args:
        if key not in allowed and key not in LEGACY_OPTIMIZER_ARGUMENTS:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            raise AtKey(str(key), f"{name} takes no argument {key!r}" + (f"; did you mean {hint[0]!r}?" if hint
                                                                         else "") + f" Allowed: {', '.join(allowed)}")
    if "lr" in args and "learning_rate" in args:
        raise AtKey("lr", "and learning_rate both given: lr is Keras 1/2's name of learning_rate; keep one")
    if "decay" in args and (not isinstance(args["decay"], (int, float)) or isinstance(args["decay"], bool)
                            or args["decay"] < 0):
        raise AtKey("decay", f"must be a number >= 0. Received: {args['decay']!r}")
    import keras

    modern = {("learning_rate" if key == "lr" else key): item for key, item in args.items() if key != "decay"}
    try:
        type(keras.optimizers.get(name))(**modern)
    except (ValueError, TypeError) as exc:
        raise AtKey("", f"Keras' {name} refuses the arguments {modern}: {exc}") from None
    return value
