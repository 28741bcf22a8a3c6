"""Every error a user can cause: one base class, which the `kerasflow` command reports as one line and exit 2.

Each message names where the problem is, the way the user would look for it: the params key as DVC spells it
(``params.yaml:experiments.iris_mlp.train.epochs``), or the data file and column.
"""


class KerasflowError(ValueError):
    """A user's input that kerasflow cannot use: the command prints the message alone and exits with status 2."""


class ParamsError(KerasflowError):
    """A ``params.yaml`` that cannot be used; the message names the file and key."""


class DataError(KerasflowError):
    """A data file that cannot be used as the spec describes; the message names the file and column."""


class SweepError(KerasflowError):
    """A sweep that cannot run as asked (resources, storage, nothing to resume)."""


class ServiceError(KerasflowError):
    """A server the environment, settings or params name (Prefect's API, an MLflow tracking server) where nothing
    answers; kerasflow's local Prefect server or worker that did not start; a deployment Prefect refused."""
