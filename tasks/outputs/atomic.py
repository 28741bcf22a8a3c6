"""Write-then-rename, so that a run killed mid-write leaves the previous result intact.

The new content is written beside the target, in a hidden temporary folder named after the target and the
writing process (``.metrics.json.<pid>.<random>``), then moved over the target in one step. A process killed
before that step leaves the target as it was and its temporary folder behind; the next write of the same target
removes folders whose process no longer runs, so leftovers do not pile up or get mistaken for results.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.runtime import faults
from kerasflow.tasks.runtime.processes import running

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one rename.

    Works for files and directories (a saved model folder). On error the temporary is removed and `target`
    is untouched; a file is never put in place of a folder (:class:`IsADirectoryError`), nor a folder in place of
    a file (the rename's :class:`NotADirectoryError`).

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "out.txt") as tmp:
    ...     _ = tmp.write_text("complete")
    >>> (folder / "out.txt").read_text(), sorted(p.name for p in folder.iterdir())
    ('complete', ['out.txt'])
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    tmp = tmp_dir / target.name
    try:
        yield tmp
        faults.inject(f"write:{target.name}")
        if target.is_dir() and not target.is_symlink():
            if not tmp.is_dir():  # replacing would delete the folder and everything in it
                raise IsADirectoryError(errno.EISDIR, "a folder, not replaced by a file", str(target))
            _replace_dir(tmp, target, tmp_dir / ".old")
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


@contextmanager
def command_output(target: str | Path) -> Iterator[Path]:
    """:func:`atomic_path` for an output a command line names (`predict --output`, `generate --output`, the
    report's `--out` and `--html`, each file of `data --out`): a path that cannot be written (its folder not made,
    not writable, a full disk, a name too long) is a DataError naming it, the command's one line."""
    try:
        with atomic_path(target) as tmp:
            yield tmp
    except OSError as exc:
        raise DataError(f"{target}: cannot be written ({exc.strerror or exc})") from None


def check_output(path: str | Path, folder: bool = False) -> None:
    """Refuse, before any work is done, an output path that cannot be written as a file (or with `folder`, as a
    folder): one that is the other kind, lies under a file, or has a name the file system refuses (too long).

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> check_output(folder / "new" / "report.md"), check_output(folder, folder=True)
    (None, None)
    >>> check_output(folder)
    Traceback (most recent call last):
    ...
    kerasflow.tasks.config.errors.DataError: /...: is a folder; expected a file path
    """
    path = Path(path)
    try:
        exists = path.exists()
    except OSError as exc:  # what pathlib does not take for "absent": a name too long
        raise DataError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    if exists and path.is_dir() != folder:
        raise DataError(f"{path}: is a {'file' if folder else 'folder'}; expected a {'folder' if folder else 'file'} "
                        f"path")
    ancestor = next(parent for parent in path.absolute().parents if parent.exists())
    if not ancestor.is_dir():
        raise DataError(f"{path}: cannot be written: {ancestor} is a file, not a folder")


def _replace_dir(new: Path, target: Path, aside: Path) -> None:
    """Put the folder `new` in place of the folder `target`, keeping the old one at `aside` until removed.

    Linux swaps the two in one step (``renameat2(RENAME_EXCHANGE)``), so no moment exists without a `target`.
    Elsewhere (or on a file system that cannot) the old folder is first moved aside: a kill between the two
    renames leaves it at `aside`, where :func:`remove_stale` puts it back.
    """
    if _exchange(new, target):
        os.replace(new, aside)  # `new` now holds the previous folder: it goes with the temporary folder
        return
    os.replace(target, aside)
    os.replace(new, target)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system offers no way to (then nothing has changed)."""
    renameat2 = getattr(_libc(), "renameat2", None) if os.name == "posix" else None
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False  # the kernel or file system cannot exchange: fall back to two renames
    raise OSError(code, os.strerror(code), str(b))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def remove_stale(target: str | Path) -> list[Path]:
    """Remove the temporary folders of `target` left by processes that no longer run; return what was removed.

    A folder holding a moved-aside previous `target` (see :func:`_replace_dir`) is first put back when the
    target itself is missing. Folders of running processes, this one included, are left alone: they may be
    writing now.
    """
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.[a-z0-9_]{{8}}")
    removed = []
    for entry in target.parent.glob(f".{glob.escape(target.name)}.*"):
        match = pattern.fullmatch(entry.name)
        if not match or not entry.is_dir() or running(int(match.group(1))):
            continue
        aside = entry / ".old"
        if aside.exists() and not target.exists():
            os.replace(aside, target)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def write_json(target: str | Path, payload: Any) -> None:
    """Write `payload` as indented, key-sorted JSON, atomically. Strict JSON: a NaN or infinite number is an
    error here rather than a file that strict parsers refuse (a missing value is written as null)."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_path(target) as tmp:
        tmp.write_text(text)
