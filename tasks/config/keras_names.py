"""Names of Keras objects in params.yaml (optimizers, losses, activations, initializers), checked against Keras
itself so that a typo fails before anything runs, with the allowed names listed.

Importing Keras takes seconds (TensorFlow's import): inside :func:`without_keras` these checks are skipped, so
that a command that trains nothing (`kerasflow list`), and a first pass that finds every other bad key, answer
at once (:func:`kerasflow.tasks.config.schema.load_params`).
"""

from __future__ import annotations

import contextvars
import difflib
import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

_WITH_KERAS = contextvars.ContextVar("check_with_keras", default=True)


def checking() -> bool:
    """Whether names are being checked against Keras (False inside :func:`without_keras`)."""
    return _WITH_KERAS.get()


@contextmanager
def without_keras() -> Iterator[None]:
    """Within the block, names and arguments are taken as given: nothing imports Keras."""
    token = _WITH_KERAS.set(False)
    try:
        yield
    finally:
        _WITH_KERAS.reset(token)


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
    # Only what `get` takes: keras.optimizers also exports classes it does not look up by name (Lamb, MultiOptimizer).
    return sorted(name for name in names if _gets(module.get, name))


def _gets(getter: Callable[[str], object], name: str) -> bool:
    """Whether Keras' `getter` resolves `name` (KeyError: a class that needs arguments, `constant` its value)."""
    try:
        getter(name)
    except (ValueError, TypeError, KeyError):
        return False
    return True

def _snake(name: str) -> str:
    out = [name[0].lower()]
    for prev, ch in zip(name, name[1:]):
        out.append(("_" + ch.lower()) if ch.isupper() and prev.islower() else ch.lower())
    return "".join(out)

def check_name(kind: str, value: str) -> str:
    """Resolve `value` the way Keras will at build time, so a typo fails before anything runs."""
    if not _WITH_KERAS.get():
        return value
    import keras

    if not _gets(getattr(keras, kind).get, value):
        allowed = known_names(kind)
        hint = difflib.get_close_matches(value, allowed, n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        singular = {"losses": "loss"}.get(kind, kind[:-1])
        raise ValueError(f"unknown {singular} {value!r}.{suggestion} Allowed: {', '.join(allowed)}")
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

CONSTRAINTS = ("max_norm", "non_neg", "unit_norm", "min_max_norm")
"""The weight constraints a layer takes (`kernel_constraint: {name: max_norm, max_value: 3}`)."""

REGULARIZERS = {"l1": "L1", "l2": "L2", "l1_l2": "L1L2"}
"""The weight penalties a layer takes (`kernel_regularizer: {name: l2, l2: 0.001}`), by name: their Keras class."""


def keras_class(kind: str, name: str) -> type:
    """The Keras class of optimizer, constraint, regularizer or loss `name` (a checked name; a loss's by its
    function's name, ``categorical_crossentropy`` for CategoricalCrossentropy)."""
    import keras

    if kind == "regularizers":
        return getattr(keras.regularizers, REGULARIZERS[name])
    if kind == "losses":
        return getattr(keras.losses, "".join(part.capitalize() for part in name.split("_")))
    return type(getattr(keras, kind).get(name))


SET_BY_KERASFLOW = {"losses": ("from_logits", "axis", "ignore_class", "reduction", "dtype")}
"""Arguments of a Keras class that params.yaml does not give: a loss's `from_logits` (kerasflow's models end in
their activation, and are scored on what it gives), `axis`, its reduction and dtype."""
SET_BY_KERASFLOW_WHY = ("a model ends in its activation (from_logits is false) and is scored on what it gives, over "
                        "its last axis, in float32")
USE_EMA_WHY = ("Keras copies the moving averages into the model at the end of each fit, after kerasflow has "
               "scored the fold's predictions, so the scores would not be the saved model's (and a fold trained in "
               "several fits would go on from the averages); leave it out")
"""Why an optimizer's `use_ema: true` is refused."""
EMA_SETTINGS = ("ema_momentum", "ema_overwrite_frequency")
"""An optimizer's arguments that only `use_ema: true` reads, refused with it."""


LIST_ARGUMENTS: dict[tuple[str, str], tuple[str, ...]] = {
    **{("constraints", name): ("axis",) for name in ("max_norm", "unit_norm", "min_max_norm")},
    ("losses", "categorical_focal_crossentropy"): ("alpha",),
}
"""The arguments with a number for default that Keras also takes a list of numbers for, by kind and name: a
constraint's axes (`[0, 1, 2]`: each conv2d filter's weights) and a categorical focal loss's per-class `alpha`. Any
other number (an optimizer's `beta_1`, a binary focal loss's `alpha`) Keras would take as a list and fail on once it
trains."""


def check_argument_type(key: str, value: object, default: object, lists: bool = False) -> None:
    """Refuse an argument that is not of its default's kind (a bool; a number, or where `lists` a list of numbers
    too, as :data:`LIST_ARGUMENTS` names), or a number that is not finite (NaN or infinite: NaN passes any range
    check Keras makes, as it compares false), which Keras would take silently and fail on only once it trains.
    Raises :class:`AtKey` naming it.

    Examples
    --------
    >>> check_argument_type("axis", [0, 1, 2], 0, lists=True)
    >>> check_argument_type("momentum", float("nan"), 0.0)
    Traceback (most recent call last):
    ...
    kerasflow.tasks.config.section.AtKey: must be a finite number. Received: nan
    >>> check_argument_type("beta_1", [0.9], 0.9)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kerasflow.tasks.config.section.AtKey: must be a number, not a list: ... Received: [0.9]
    """
    from kerasflow.tasks.config.section import AtKey

    def number(item: object) -> bool:
        return isinstance(item, int | float) and not isinstance(item, bool)

    if isinstance(default, bool) and not isinstance(value, bool):
        raise AtKey(key, f"must be true or false. Received: {value!r}")
    if any(number(item) and not math.isfinite(item) for item in (value if isinstance(value, list | tuple)
                                                                  else [value])):
        raise AtKey(key, f"must be a finite number. Received: {value!r}")
    if not number(default) or number(value):
        return
    if isinstance(value, list | tuple) and lists:
        if not value or not all(map(number, value)):
            raise AtKey(key, f"must be a number or a list of numbers. Received: {value!r}")
        return
    if isinstance(value, list | tuple):
        raise AtKey(key, "must be a number, not a list: a list is taken only by a constraint's axis and a "
                         f"categorical focal loss's alpha. Received: {value!r}")
    hint = ""
    if isinstance(value, str):
        with suppress(ValueError):
            hint = f" (YAML reads {value} as text: write {float(value):.1e} or {float(value)!r})"
    raise AtKey(key, f"must be a number{hint}. Received: {value!r}")


def arguments_of(cls: type) -> list[str]:
    """The arguments a Keras class takes (its constructor's, less `name` and `**kwargs`)."""
    signature = inspect.signature(cls.__init__)
    return [arg for arg, param in signature.parameters.items()
            if arg not in ("self", "name") and param.kind is not param.VAR_KEYWORD]


def check_configured(kind: str, value: object, legacy: dict[str, str] | None = None) -> object:
    """An optimizer, constraint, regularizer or loss as params.yaml gives it (`kind`: "optimizers", "constraints",
    "regularizers" or "losses"): its name, or a mapping of its name and arguments (`{name: sgd, learning_rate: 0.1,
    momentum: 0.8}`). Each argument is checked against the class's own signature (less :data:`SET_BY_KERASFLOW`)
    and the object is built, so a bad one fails before anything runs; a loss's `label_smoothing` must be from 0 to 1,
    and an optimizer's `use_ema: true` and the arguments only it reads (:data:`EMA_SETTINGS`) are refused
    (:data:`USE_EMA_WHY`). `legacy` names extra arguments accepted (and translated by the caller). Raises
    :class:`AtKey` naming the argument."""
    from kerasflow.tasks.config.section import AtKey

    legacy = legacy or {}
    singular = {"losses": "loss"}.get(kind, kind[:-1])
    if not isinstance(value, (str, dict)):
        raise ValueError(f"must be a {singular}'s name or a mapping {{name: ..., <argument>: ...}}")
    name = value if isinstance(value, str) else value.get("name")
    if name is None:
        raise AtKey("name", f"is required: the {singular}'s name. Received: none")
    allowed_names = {"optimizers": None, "losses": None, "constraints": CONSTRAINTS,
                     "regularizers": tuple(REGULARIZERS)}[kind]
    try:
        if allowed_names is None:
            check_name(kind, name)
        elif name not in allowed_names:
            hint = difflib.get_close_matches(str(name), allowed_names, n=1)
            raise ValueError(f"unknown {singular} {name!r}." + (f" Did you mean {hint[0]!r}?" if hint else "")
                             + f" Allowed: {', '.join(allowed_names)}")
    except ValueError as exc:
        raise (AtKey("name", str(exc)) if isinstance(value, dict) else exc) from None
    if isinstance(value, str) or not _WITH_KERAS.get():
        return value
    cls = keras_class(kind, name)
    fixed = SET_BY_KERASFLOW.get(kind, ())
    allowed = [arg for arg in arguments_of(cls) if arg not in fixed]
    args = {key: item for key, item in value.items() if key != "name"}
    defaults = {arg: param.default for arg, param in inspect.signature(cls.__init__).parameters.items()}
    for key, item in args.items():
        if key in fixed:
            raise AtKey(str(key), f"is set by kerasflow, not params.yaml: {SET_BY_KERASFLOW_WHY}. Received: {item!r}")
        if key not in allowed and key not in legacy:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            raise AtKey(str(key), f"{name} takes no argument {key!r}" + (f"; did you mean {hint[0]!r}?" if hint
                                                                         else ".")
                        + (f" Allowed: {', '.join(allowed)}" if allowed else " It takes none: give its name alone"))
        checked_as = "learning_rate" if key == "lr" and "lr" in legacy else key  # Keras 1/2's name, read as it
        if checked_as in defaults:
            check_argument_type(str(key), item, defaults[checked_as],
                                lists=key in LIST_ARGUMENTS.get((kind, name), ()))
    smoothing = args.get("label_smoothing", 0) if kind == "losses" else 0
    if not 0 <= smoothing <= 1:  # Keras takes any number, and trains towards targets outside [0, 1]
        raise AtKey("label_smoothing", f"must be from 0 to 1: the share of each target spread evenly over the "
                                       f"classes. Received: {smoothing!r}")
    if kind == "optimizers" and args.get("use_ema") is True:
        raise AtKey("use_ema", f"must be false: {USE_EMA_WHY}. Received: true")
    for key in (EMA_SETTINGS if kind == "optimizers" else ()):
        if key in args:  # Keras reads them only with use_ema: true, and takes them silently without it
            raise AtKey(key, f"sets the moving averages of use_ema: true, which is refused: {USE_EMA_WHY}. "
                             f"Received: {args[key]!r}")
    if "lr" in legacy and "lr" in args and "learning_rate" in args:
        raise AtKey("lr", "and learning_rate both given: lr is Keras 1/2's name of learning_rate; keep one")
    if "decay" in legacy and "decay" in args and (not isinstance(args["decay"], (int, float))
                                                  or isinstance(args["decay"], bool)
                                                  or not math.isfinite(args["decay"]) or args["decay"] < 0):
        raise AtKey("decay", f"must be a finite number >= 0. Received: {args['decay']!r}")
    modern = {("learning_rate" if key == "lr" else key): item for key, item in args.items() if key != "decay"}
    try:
        cls(**modern)
    except (ValueError, TypeError) as exc:
        raise AtKey("", f"Keras' {name} refuses the arguments {modern}: {exc}") from None
    return value
