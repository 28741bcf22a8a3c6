"""Keras work in several threads of one process: in turns, on a backend that is not thread-safe.

Keras declares its TensorFlow backend not thread-safe (the backends' `IS_THREAD_SAFE`, not public API;
tensorflow/tensorflow#78338) and then runs no callback in a thread of its own: two threads building or training
TensorFlow models at once can kill the process with a segmentation fault. Its JAX, PyTorch and NumPy backends are
declared thread-safe. The flows run some Keras work in threads of Prefect's task runner: an experiment's refit
beside its folds where :func:`keras_thread_safe` allows it (flows/pipeline.py), and the experiments that train on a
Ray cluster side by side, each of which builds and saves its refitted model in this process. Each such step holds
:func:`keras_turn`: on TensorFlow they take turns, on the other backends they overlap. Which goes first changes no
result: every model is seeded on its own (tasks/training/models.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import keras

NOT_THREAD_SAFE = frozenset({"tensorflow"})
"""The Keras backends whose Keras work runs in one thread at a time."""

_turn = threading.RLock()


def keras_thread_safe() -> bool:
    """Whether the Keras backend in use may run Keras work in several threads at once."""
    return keras.backend.backend() not in NOT_THREAD_SAFE


@contextmanager
def keras_turn() -> Iterator[None]:
    """Run the block's Keras work while no other thread runs its own, when the backend is not thread-safe
    (re-entrant); otherwise at once, beside other threads'."""
    if keras_thread_safe():
        yield
    else:
        with _turn:
            yield
