"""tasks/outputs/atomic.py on its own, with real processes killed mid-write: the previous file or folder stays whole,
and the dead writer's temporary folder is cleared by the next write (never one of a live writer)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.outputs.atomic import _exchange, atomic_path, command_output, remove_stale

WRITER = """
import sys, time
from pathlib import Path
from kerasflow.tasks.outputs.atomic import atomic_path
target, kind = Path(sys.argv[1]), sys.argv[2]
with atomic_path(target) as tmp:
    if kind == "dir":
        tmp.mkdir()
        (tmp / "part").write_text("new, half written")
    else:
        tmp.write_text("new, half written")
    print("writing", flush=True)
    time.sleep(600)
"""


def _write(tmp: Path, kind: str, text: str) -> None:
    if kind == "dir":
        tmp.mkdir()
        (tmp / "part").write_text(text)
    else:
        tmp.write_text(text)


def _killed_writer(target: Path, kind: str) -> int:
    """A separate process that starts replacing `target` and is SIGKILLed mid-write; returns its pid."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), kind], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    return writer.pid


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_a_writer_killed_mid_write_leaves_the_previous_result_and_the_next_write_clears_its_leftover(tmp_path, kind):
    target = tmp_path / ("metrics.json" if kind == "file" else "model")
    with atomic_path(target) as tmp:
        _write(tmp, kind, "previous")
    pid = _killed_writer(target, kind)

    previous = target / "part" if kind == "dir" else target
    assert previous.read_text() == "previous"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert [name.split(".")[-2] for name in leftovers] == [str(pid)]

    with atomic_path(target) as tmp:
        _write(tmp, kind, "next")
    assert previous.read_text() == "next"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_live_writers_temporary_folder_is_left_alone(tmp_path):
    target = tmp_path / "metrics.json"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), "file"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert writer.stdout.readline().strip() == "writing"
        assert remove_stale(target) == []
        assert len([p for p in tmp_path.iterdir() if p.name.startswith(".")]) == 1
    finally:
        writer.kill()
        writer.wait(timeout=30)


def test_a_folder_moved_aside_by_a_killed_two_rename_swap_is_put_back(tmp_path):
    """Where the system cannot swap two folders in one step, the old one is moved aside first; a kill between
    the two renames leaves no target. The next write (or :func:`remove_stale`) puts the old one back."""
    target = tmp_path / "model"
    leftover = tmp_path / ".model.999999999.abcdefgh"  # no such process
    (leftover / ".old").mkdir(parents=True)
    (leftover / ".old" / "part").write_text("previous")
    assert remove_stale(target) == [leftover]
    assert (target / "part").read_text() == "previous" and not leftover.exists()


def test_folders_are_swapped_in_one_step_on_this_system(tmp_path):
    """Linux renameat2(RENAME_EXCHANGE): a reader never finds the model folder missing."""
    if sys.platform != "linux":
        pytest.skip("RENAME_EXCHANGE is Linux's; elsewhere the two-rename fallback above applies")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "from_a").touch()
    assert _exchange(a, b)
    assert [p.name for p in b.iterdir()] == ["from_a"] and list(a.iterdir()) == []


def test_a_file_never_replaces_a_folder(tmp_path):
    """A file written where a folder is would take the folder's whole content with it: refused, the folder kept."""
    target = tmp_path / "results"
    target.mkdir()
    (target / "kept.txt").write_text("precious")
    with pytest.raises(IsADirectoryError), atomic_path(target) as tmp:
        tmp.write_text("a report")
    assert (target / "kept.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_a_commands_output_that_cannot_be_written_is_one_error_naming_it(tmp_path):
    """An output the command line names, whose folder cannot be made (here under /proc, which takes no new folder
    even from root), is a DataError naming the path, as the command's one line; nothing is left beside it."""
    with pytest.raises(DataError, match=r"^/proc/kerasflow/summary.md: cannot be written \(.+\)$"), \
            command_output("/proc/kerasflow/summary.md") as tmp:
        tmp.write_text("a report")
    with pytest.raises(DataError, match=r"x{300}.md: cannot be written \(File name too long\)$"), \
            command_output(tmp_path / f"{'x' * 300}.md") as tmp:
        tmp.write_text("a report")
    assert list(tmp_path.iterdir()) == []
