"""Which Keras backend a run trains on: ``backend:`` in params.yaml, unless ``KERAS_BACKEND`` is set.

Keras fixes its backend when it is first imported, and validating params.yaml imports Keras (layer, loss and
optimizer names are checked against it). So the one key is read, and the backend chosen, before the file is
validated and before anything else imports Keras. An explicit ``KERAS_BACKEND`` wins, as it does for Keras
itself; either way ``metrics.json`` records the backend a result was computed with (``environment.backend``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal, get_args

import yaml

TENSORFLOW_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_DETERMINISTIC_OPS": "1", "TF_ENABLE_ONEDNN_OPTS": "0"}
"""TensorFlow's switches kerasflow sets where the environment does not (TensorFlow reads them as it loads or first
runs an op, so they are set before it is imported): its C++ logs quiet; its deterministic kernels, so that the same
seed gives the same numbers; and oneDNN's custom ops off. TensorFlow turns those on by itself only on CPUs with
VNNI, BF16 or AMX instructions (recent Xeons, some desktop CPUs), so with them results depend on the CPU: off, a
machine that has them reproduced 7 of the 8 committed results computed on one that does not bit for bit (5 of 8
with them on). They also slow the small models kerasflow is for: the default pipeline took 15% less time without
them, every MLP and LSTM 20-40% less, though the digits CNN took 1.8x as long (BENCHMARKS.md); set
``TF_ENABLE_ONEDNN_OPTS=1`` for a CNN-heavy run on such a CPU (TensorFlow then prints its oneDNN notice as it
loads)."""


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


JAX_DEFAULTS = {"JAX_COMPILATION_CACHE_DIR": str(_cache_home() / "kerasflow" / "jax"),
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_COMPILATION_CACHE_MAX_SIZE": str(2**30)}
"""JAX's persistent compilation cache, which kerasflow turns on where the environment does not set it: compiled programs
are kept on disk (at most 1 GiB, least recently used first out), keyed by the program, JAX's version and the device,
so a model of a shape compiled before is loaded, not compiled again. That is any later run of an experiment, every
trial of a sweep but the first of each shape, and in one run every fold of a per-fold model after the first: JAX
keeps compiled programs per model in memory only. JAX caches only programs that took over 1 s to compile by default;
a small model's take 0.05-0.4 s each, a third of the time one fold of the books' 12-8-1 MLP trains for 150 epochs.
With the programs cached, that fold took 0.94 s against 1.31 s, its 10 folds stacked 1.07 s against 1.62 s, and the
default pipeline run again on JAX 60 s against 69 s (BENCHMARKS.md). ``JAX_ENABLE_COMPILATION_CACHE=false`` turns it
off. Some CPUs refuse XLA's cached programs (openxla/xla#44565: XLA then logs a "Target machine feature" error per
program, and compiles as if uncached)."""

BACKEND_DEFAULTS = {**TENSORFLOW_DEFAULTS, **JAX_DEFAULTS}
"""Every setting kerasflow gives the backends where the environment does not (:func:`set_backend_defaults`)."""


Backend = Literal["tensorflow", "jax", "torch"]
BACKENDS: tuple[str, ...] = get_args(Backend)
DEFAULT: Backend = "tensorflow"


def choose_backend(params_file: str | Path) -> str:
    """Set ``KERAS_BACKEND`` from `params_file`'s ``backend:`` key (default tensorflow) and return it.

    A file that cannot be read is left for :func:`tasks.spec.load_params` to report; a backend Keras does not
    have is a :class:`tasks.spec.ParamsError` naming the key.
    """
    from tasks.spec import ParamsError

    if os.environ.get("KERAS_BACKEND"):
        chosen = os.environ["KERAS_BACKEND"]
        where = "the environment's KERAS_BACKEND"
    else:
        chosen, where = _read(Path(params_file)), f"{params_file}:backend"
    if chosen not in BACKENDS:
        raise ParamsError(f"{where}: unknown Keras backend {chosen!r}. Allowed: {', '.join(BACKENDS)}")
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != chosen:
        raise RuntimeError(f"Keras was imported with backend {keras.backend.backend()!r} before {where} chose "
                           f"{chosen!r}: choose the backend first")
    os.environ["KERAS_BACKEND"] = chosen
    return chosen


def _read(params_file: Path) -> str:
    try:
        raw = yaml.safe_load(params_file.read_text())
    except (OSError, yaml.YAMLError):
        return DEFAULT
    return raw.get("backend", DEFAULT) if isinstance(raw, dict) else DEFAULT


def backend_settings() -> dict[str, str]:
    """:data:`BACKEND_DEFAULTS` as this process has them: the environment's value wherever it sets one."""
    return {name: os.environ.get(name, value) for name, value in BACKEND_DEFAULTS.items()}


def set_backend_defaults() -> None:
    """Set each of :data:`BACKEND_DEFAULTS` the environment does not set; before TensorFlow or JAX is imported."""
    for name, value in BACKEND_DEFAULTS.items():
        os.environ.setdefault(name, value)
