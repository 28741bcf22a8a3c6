"""Models by name, through DVC's model registry.

dvc.yaml's ``artifacts:`` declares each experiment's refitted model (``results/<experiment>/model``) and each
sweep's best (``results/<experiment>/tune/best_model``) as a model, so DVC's registry (``dvc artifacts get``,
DVC Studio) knows them. Versions and stages are GTO's annotated git tags, made with the ``gto`` command DVC
installs: ``gto register iris_mlp --version v1.0.0``, ``gto assign iris_mlp --version v1.0.0 --stage prod``.

:func:`model_folder` turns what a user passes as ``kerasflow predict --model`` into a model folder:

- a folder (any path with a ``/``, or a folder that exists): itself;
- ``NAME@vX.Y.Z``: the version registered under that tag;
- ``NAME#STAGE``: the version last assigned to the stage;
- ``NAME``: the latest registered version (highest semver), as ``dvc artifacts get NAME`` gives.

A registered version's files are read from the git commit its tag points at, out of the local DVC cache (or the
project's DVC remote), never from the working folder.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kerasflow.tasks.config.errors import DataError

_REFERENCE = re.compile(r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)"
                        r"(?:@(?P<version>[^@#/]+)|#(?P<stage>[^@#/]+))?")
"""A registered model: its name (GTO's rule, without the `/` DVC's registry keeps for nested dvc.yaml files: a
reference with a `/` is a folder), then a version or a stage."""


@contextmanager
def model_folder(model: str | Path, root: str | Path = ".") -> Iterator[Path]:
    """The model folder `model` names (see the module's docstring), for the time of the `with` block; a
    registered version is fetched into a temporary folder removed afterwards.

    `root` is the DVC project (a git repository) whose registry names are looked up in.
    """
    reference = str(model)
    match = _REFERENCE.fullmatch(reference)
    if Path(model).is_dir() or match is None:
        yield Path(model)  # a folder (one that is missing is refused by name when read)
        return
    name, version, stage = match["name"], match["version"], match["stage"]
    if version is not None and not version.startswith("v"):
        raise DataError(f"--model {reference}: a version is written with its v, as GTO tags it: {name}@v{version}")
    with tempfile.TemporaryDirectory(prefix="kerasflow-model-") as fetched:
        yield _fetch(reference, name, version, stage, Path(root), Path(fetched))


def _fetch(reference: str, name: str, version: str | None, stage: str | None, root: Path, into: Path) -> Path:
    """Fetch the registered model's folder into `into`; every way it can be missing is one DataError."""
    import dvc.api
    from dvc.exceptions import ArtifactNotFoundError, DvcException
    from dvc_data.index import DataIndexError
    from gto.exceptions import GTOException

    try:
        found = dvc.api.artifacts_show(name, version=version, stage=stage, repo=str(root))
    except ArtifactNotFoundError:
        raise DataError(f"--model {reference}: no such folder, and no registered model {_what(name, version, stage)} "
                        f"({_registered(root)})") from None
    except IndexError:  # DVC's lookup of the latest version when the model has stage tags only
        raise DataError(f"--model {reference}: {name} has no registered version; register one with "
                        f"`gto register {name} --version v1.0.0`") from None
    except (DvcException, GTOException) as exc:
        raise DataError(f"--model {reference}: no such folder, and the registry cannot be read here: {exc}") from None
    target = into / "model"
    try:
        dvc.api.DVCFileSystem(str(root), rev=found["rev"]).get(found["path"], str(target), recursive=True)
    except (FileNotFoundError, DataIndexError):  # a file's data missing, or a folder's listing (a model folder's)
        raise DataError(f"--model {reference}: {found['path']} at {found['rev'][:8]} is in neither the local DVC cache "
                        f"nor a DVC remote (run `dvc pull` where it is)") from None
    return target


def _what(name: str, version: str | None, stage: str | None) -> str:
    return f"{name} version {version}" if version else f"{name} in stage {stage!r}" if stage else f"named {name}"


def _registered(root: Path) -> str:
    """The models dvc.yaml declares, for an error message."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        names = sorted(name for artifacts in repo.artifacts.read().values() for name in artifacts)
    return f"dvc.yaml declares: {', '.join(names)}" if names else "dvc.yaml declares no artifacts"
