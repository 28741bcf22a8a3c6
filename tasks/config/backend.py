"""Which Keras backend a run trains on: ``backend:`` in params.yaml, unless ``KERAS_BACKEND`` is set.

Keras fixes its backend when it is first imported, and validating params.yaml imports Keras (layer, loss and
optimizer names are checked against it). So the one key is read, and the backend chosen, before the file is
validated and before anything else imports Keras. An explicit ``KERAS_BACKEND`` wins, as it does for Keras
itself; either way ``run.json`` records the backend a result was computed with (``environment.backend``).

It also holds what kerasflow sets up for the backends before they are imported (:func:`set_backend_defaults`):
TensorFlow's switches and JAX's compilation cache, each only where the environment does not set it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Literal, get_args

import yaml

from kerasflow.tasks.config.errors import ParamsError

TENSORFLOW_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_DETERMINISTIC_OPS": "1", "TF_ENABLE_ONEDNN_OPTS": "0"}
"""TensorFlow's switches kerasflow sets where the environment does not, before TensorFlow is imported (it reads them
as it loads or first runs an op): its C++ logs quiet; its deterministic kernels, so that the same seed gives the same
numbers; and oneDNN's custom ops off. TensorFlow turns those on by itself only on CPUs with VNNI, BF16 or AMX
instructions, so with them on, results depend on the CPU; they also slow the small models kerasflow is for (the
figures are in BENCHMARKS.md). Set ``TF_ENABLE_ONEDNN_OPTS=1`` for a CNN-heavy run on such a CPU."""


JAX_DEFAULTS = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_COMPILATION_CACHE_MAX_SIZE": str(2**30)}
"""JAX's persistent compilation cache, which kerasflow turns on where the environment does not set it, in
:func:`jax_cache_folder`: compiled programs are kept on disk (at most 1 GiB, least recently used first out), keyed by
the program, JAX's version and the kind of device, so a model of a shape compiled before is loaded, not compiled
again: any later run of an experiment, a sweep's trials after the first of a shape, and every fold of a per-fold
model after the first (JAX keeps compiled programs per model in memory only). Programs that compile in milliseconds
are kept too, as each new trial process would otherwise compile them again. ``JAX_ENABLE_COMPILATION_CACHE=false``
turns it off. Some CPUs refuse XLA's cached programs (openxla/xla#44565: XLA then logs a "Target machine feature"
error per program, and compiles as if uncached); delete the folder if JAX warns that an entry cannot be read."""

JAX_CACHE_FOLDER = "JAX_COMPILATION_CACHE_DIR"
JAX_CACHE_SWITCH = "JAX_ENABLE_COMPILATION_CACHE"


def jax_cache_folder() -> str | None:
    """kerasflow's JAX cache folder: ``kerasflow/jax/<this CPU>`` in the user's cache folder (``$XDG_CACHE_HOME``,
    else ``~/.cache``); None for a user with no home folder (a container's arbitrary user id).

    One folder per kind of CPU: XLA compiles for the host's instruction set, and JAX's key names the device only as
    "cpu", so machines sharing a home folder would otherwise load each other's programs.
    """
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no HOME, and no passwd entry to find it from
        return None
    return str(base / "kerasflow" / "jax" / _cpu_kind())


@functools.cache
def _cpu_kind() -> str:
    """The machine type and a short hash of the CPU's feature flags (Linux), or of its processor name; read once
    per process, as the CPU does not change under it."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in cpuinfo if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        flags = platform.processor()
    return f"{platform.machine()}-{hashlib.sha256(flags.encode()).hexdigest()[:12]}"


def backend_defaults() -> dict[str, str]:
    """Every setting kerasflow gives the backends where the environment does not: :data:`TENSORFLOW_DEFAULTS`,
    :data:`JAX_DEFAULTS` and the JAX cache folder."""
    folder = jax_cache_folder()
    return {**TENSORFLOW_DEFAULTS, **JAX_DEFAULTS, **({JAX_CACHE_FOLDER: folder} if folder else {})}


Backend = Literal["tensorflow", "jax", "torch"]
BACKENDS: tuple[str, ...] = get_args(Backend)
DEFAULT_BACKEND: Backend = "tensorflow"


def choose_backend(params_file: str | Path) -> str:
    """Set ``KERAS_BACKEND`` from `params_file`'s ``backend:`` key (default tensorflow) and return it.

    A file that cannot be read is left for :func:`kerasflow.tasks.config.schema.load_params` to report; a
    backend Keras does not have is a :class:`ParamsError` naming the key.
    """
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
        raw = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return DEFAULT_BACKEND
    return raw.get("backend", DEFAULT_BACKEND) if isinstance(raw, dict) else DEFAULT_BACKEND


def backend_settings(*, portable: bool = False) -> dict[str, str]:
    """The backends' settings in effect in this process, for processes it starts: each of :func:`backend_defaults`
    as the environment has it, and JAX's cache switch where the environment sets it.

    `portable` leaves out kerasflow's own JAX cache folder, a path in this machine's user's home, for processes on
    other machines: there it is only sent where the user chose it.
    """
    defaults = backend_defaults()
    settings = {name: os.environ.get(name, value) for name, value in defaults.items()}
    if portable and JAX_CACHE_FOLDER in defaults and settings[JAX_CACHE_FOLDER] == defaults[JAX_CACHE_FOLDER]:
        del settings[JAX_CACHE_FOLDER]
    if JAX_CACHE_SWITCH in os.environ:
        settings[JAX_CACHE_SWITCH] = os.environ[JAX_CACHE_SWITCH]
    return settings


class WithoutRetracingWarnings(logging.Filter):
    """Drops TensorFlow's warning that a tf.function "triggered tf.function retracing": folds trained one after
    another are each a new model with programs of its own, by design, so after the fifth the warning would mark
    every fold, and it asks for nothing to be changed. TensorFlow's other warnings pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


RETRACING = WithoutRetracingWarnings()


def hide_retracing_warnings() -> None:
    """Put :class:`WithoutRetracingWarnings` on TensorFlow's logger (the one it writes through; once is enough)."""
    logging.getLogger("tensorflow").addFilter(RETRACING)


def set_backend_defaults() -> None:
    """Set each of :func:`backend_defaults` the environment does not set; before TensorFlow or JAX is imported."""
    for name, value in backend_defaults().items():
        os.environ.setdefault(name, value)
