"""Fuzzed input: mutated params.yaml and CSVs, run through `kerasflow run --smoke-test`; refused in one line or run.

Hypothesis mutates the shipped params.yaml (drops, retypes, renames, enlarges, negates, nests and un-nests keys) and
the bundled CSV of the experiment being run (cells made empty, text, huge, infinite; rows truncated, columns added
or removed, the file re-encoded or re-separated), then runs `kerasflow run <experiment> --smoke-test` on the result
in this process, through `kerasflow.flows.cli.main` as the console script does (the fault suite's way: chdir into
the project, capture stdout and stderr). Every example must end one of three ways:

- exit status 0: the smoke run trained (its results are written);
- exit status 2: stdout empty, stderr exactly one line `kerasflow: error: ...`, and nothing under the project
  created, changed or deleted (a snapshot of every file before and after);
- exit status 3: a diverged training, a result stated in one line per experiment, `kerasflow: diverged: ...`.

Never a traceback, never an exception out of `main`. The examples are derandomised, so CI runs the same ones each
time: `KERASFLOW_FUZZ_EXAMPLES` of them (100 by default, about a minute and a half on two cores busy with the rest
of the suite); the documented longer run is `KERASFLOW_FUZZ_EXAMPLES=3000 .venv/bin/python -m pytest
tests/test_fuzz.py` (docs/reliability.md).

Most mutations are refused by validation in milliseconds; the ones that pass train for about two seconds each (a
Prefect flow against the suite's server), so the experiments run are the shipped ones with small data.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from faults.support import changes, snapshot
from helpers import ROOT, run_in_process
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("KERASFLOW_FUZZ_EXAMPLES", "100"))
"""How many examples the test runs: 100 in CI (the suite's time is kept under 20 minutes), 3,000 in the documented
longer run."""

SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())
"""The shipped params.yaml, which every example starts from."""

RUNNABLE = ("iris_mlp", "cancer_mlp", "boston_standardized", "sunspots_mlp")
"""The shipped experiments an example runs: multiclass, binary, regression and a series, each on a small bundled CSV
(a smoke run of each trains in about two seconds)."""

DATA_FILES = sorted({SHIPPED["experiments"][name]["dataset"]["file"] for name in RUNNABLE})
"""The CSVs copied into every project: those of the runnable experiments, which a mutated `dataset.file` may name."""

KeyPath = tuple[object, ...]
"""Where a value sits in the params document: its keys and list indices from the top."""


def dotted(path: KeyPath) -> str:
    """A path in params.yaml as DVC spells it: `experiments.iris_mlp.model.layers[0].units`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) and text else f"{'.' if text else ''}{part!r}"
    return text.replace("'", "")


def paths(node: object, prefix: KeyPath = ()) -> list[KeyPath]:
    """Every key and list item under `node`, parents before children."""
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return []
    found: list[KeyPath] = []
    for key, value in items:
        found.append((*prefix, key))
        found.extend(paths(value, (*prefix, key)))
    return found


def parent_of(doc: dict, path: KeyPath) -> dict | list:
    """The mapping or list that holds the value at `path`."""
    node: object = doc
    for part in path[:-1]:
        node = node[part]  # type: ignore[index]
    return node  # type: ignore[return-value]


def is_number(value: object) -> bool:
    """An int or a float, not a bool (which YAML and Python count as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def retyped(value: object) -> list[object]:
    """Values of other types made from `value`: int -> str, str -> int, list -> scalar, scalar -> list, ..."""
    candidates: list[object] = [str(value), [value], None, True, len(str(value)), float(len(str(value))) + 0.5]
    if isinstance(value, list) and value:
        candidates.append(value[0])
    if isinstance(value, dict):
        candidates.append(list(value.values()))
    return [c for c in candidates if type(c) is not type(value)]


KEY_TEXT = st.text(max_size=12)
"""Any text as a key of params.yaml, line breaks included."""


def renamed(key: str) -> st.SearchStrategy[object]:
    """A new name for a key: a typo of it, its upper case, another spelling, any text, or a number."""
    typos = [key[:-1], key + "s", key.upper(), key.replace("_", "-"), key.replace("_", ""), key[1:] + key[:1]]
    return st.sampled_from([t for t in typos if t and t != key]) | KEY_TEXT | st.integers(-3, 3)


# Not a defect but a cost: a width the schema accepts (below 2**31) can still ask for tens of GB (two adjacent
# layers of 10**5 units), which a user may mean on a big machine. Enlarged widths stop at BOUNDED_MAX; larger ones,
# and every other key enlarged without a bound, are refused by the schema.
BOUNDED_KEYS = {"units"}
BOUNDED_MAX = 10_000
"""The most an enlarged width becomes: two Dense layers this wide train in seconds."""


@st.composite
def params_edit(draw: st.DrawFn, doc: dict, experiment: str) -> str:
    """Mutate `doc` in place at one place, half the time inside the experiment being run; say what was done."""
    every = paths(doc)
    own = [p for p in every if p[:2] == ("experiments", experiment) and len(p) > 2]
    path = draw(st.sampled_from(own) | st.sampled_from(every)) if own else draw(st.sampled_from(every))
    parent, key = parent_of(doc, path), path[-1]
    value = parent[key]  # type: ignore[index]
    where = dotted(path)
    operations = ["drop", "retype", "nest"]
    if isinstance(parent, dict):
        operations.append("rename")
    if is_number(value) or isinstance(value, str | list | dict):
        operations.append("enlarge")
    if is_number(value) or isinstance(value, bool | str):
        operations.append("negate")
    if isinstance(value, dict | list) and value:
        operations.append("unnest")
    operation = draw(st.sampled_from(operations))

    new: object
    if operation == "drop":
        del parent[key]  # type: ignore[arg-type]
        return f"drop {where}"
    if operation == "rename":
        name = draw(renamed(str(key)))
        items = [(name if k == key else k, v) for k, v in parent.items()]  # type: ignore[union-attr]
        parent.clear()  # type: ignore[union-attr]
        parent.update(items)  # type: ignore[union-attr]
        return f"rename {where} to {name!r}"
    if operation == "retype":
        new = draw(st.sampled_from(retyped(value)))
    elif operation == "enlarge":
        if is_number(value):
            power = draw(st.sampled_from([1, 2, 3, 20, 400]))
            new = value * 10**power if isinstance(value, int) else value * float(f"1e{power}")
            if key in BOUNDED_KEYS and value > 0:
                new = min(new, BOUNDED_MAX)
        elif isinstance(value, str):
            new = value * draw(st.integers(2, 500))
        elif isinstance(value, list):
            new = value * draw(st.integers(2, 4))
        else:
            new = {**value, draw(KEY_TEXT.filter(bool)): draw(st.integers() | st.text(max_size=5))}
    elif operation == "negate":
        new = (not value) if isinstance(value, bool) else f"-{value}" if isinstance(value, str) else -value
    elif operation == "nest":
        new = {str(key): value}
    else:  # unnest
        new = next(iter(value.values())) if isinstance(value, dict) else value[0]
    parent[key] = new  # type: ignore[index]
    return f"{operation} {where}: {value!r} -> {new!r}"[:300]


CELLS = (st.sampled_from(["", " ", "abc", "NaN", "NA", "null", "inf", "-inf", "Infinity", "1e300", "-1e300",
                          "1e39", "3.4e38", "1e-320", "1,5", "0x1F", "1_000", "True", "١٢", "∞", '"', "a,b", "\n"])
         | st.text(max_size=6) | st.floats().map(repr) | st.integers().map(str))
"""What a cell of a CSV is replaced with: empty, text, huge or tiny numbers, infinities, look-alikes of numbers."""

ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252")


@dataclass
class Table:
    """A CSV as rows of strings (the header first) and how it is written out."""

    rows: list[list[str]]
    encoding: str = "utf-8"
    separator: str = ","
    newline: str = "\n"

    def to_bytes(self) -> bytes:
        text = io.StringIO()
        csv.writer(text, delimiter=self.separator, lineterminator=self.newline).writerows(self.rows)
        return text.getvalue().encode(self.encoding, errors="replace")


@st.composite
def csv_edit(draw: st.DrawFn, table: Table) -> str:
    """Mutate `table` in place at one place; say what was done."""
    rows = table.rows
    operations = ["encoding", "separator"]
    if rows:
        operations += ["cell", "truncate", "add-column", "short-row", "repeat-header", "empty"]
        if len(rows[0]) > 1:
            operations.append("remove-column")
    operation = draw(st.sampled_from(operations))
    if operation == "cell":
        row = draw(st.integers(0, len(rows) - 1))
        if not rows[row]:
            return "no cell to replace"
        column = draw(st.integers(0, len(rows[row]) - 1))
        old, rows[row][column] = rows[row][column], draw(CELLS)
        return f"cell at file line {row + 1}, column {column}: {old!r} -> {rows[row][column]!r}"
    if operation == "truncate":
        keep = draw(st.integers(0, len(rows) - 1))
        del rows[keep + 1:]
        return f"truncate to {keep} data rows"
    if operation == "empty":
        rows.clear()
        return "empty file"
    if operation == "add-column":
        name = draw(st.sampled_from(["extra", "größe", ""]) | st.text(max_size=8))
        kind = draw(st.sampled_from(["number", "text", "empty", "huge"]))
        values = {"number": lambda i: str(i * 0.5), "text": lambda i: f"t{i % 3}", "empty": lambda i: "",
                  "huge": lambda i: "1e300"}[kind]
        for i, row in enumerate(rows):
            row.append(name if i == 0 else values(i))
        return f"add column {name!r} of {kind} values"
    if operation == "remove-column":
        column = draw(st.integers(0, len(rows[0]) - 1))
        for row in rows:
            del row[column:column + 1]
        return f"remove column {column}"
    if operation == "short-row":
        row = draw(st.integers(0, len(rows) - 1))
        keep = draw(st.integers(0, max(len(rows[row]) - 1, 0)))
        del rows[row][keep:]
        return f"cut file line {row + 1} to {keep} fields"
    if operation == "repeat-header":
        at = draw(st.integers(1, len(rows)))
        rows.insert(at, list(rows[0]))
        return f"repeat the header at file line {at + 1}"
    if operation == "separator":
        table.separator, table.newline = draw(st.sampled_from([(";", "\n"), ("\t", "\n"), (",", "\r\n"), ("|", "\n")]))
        return f"separator {table.separator!r}, line end {table.newline!r}"
    table.encoding = draw(st.sampled_from(ENCODINGS))
    if rows and rows[0] and draw(st.booleans()):
        column = draw(st.integers(0, len(rows[0]) - 1))
        rows[0][column] += "_é"  # a non-ASCII name, so that the encoding shows
        return f"encoding {table.encoding}, header column {column} renamed {rows[0][column]!r}"
    return f"encoding {table.encoding}"


@dataclass(repr=False)
class Case:
    """One fuzzed project: the experiment run, what was changed, and the files that result (printed by Hypothesis
    as the experiment and the edits, enough to make the project again)."""

    experiment: str
    edits: list[str]
    params: str
    data_file: str
    data: bytes

    def __repr__(self) -> str:
        return f"Case({self.experiment!r}, edits={self.edits!r})"

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(repr(self))


class Bundled(dict[str, bytes]):
    """The runnable experiments' bundled CSVs: their path in a project (`data/iris.csv`) -> bytes. Shown by name
    alone when Hypothesis prints an example's strategy."""

    def __repr__(self) -> str:
        return f"Bundled({', '.join(self)})"


@st.composite
def cases(draw: st.DrawFn, bundled: Bundled) -> Case:
    """The shipped params.yaml and the run experiment's CSV (`bundled`: path -> bytes) with 0-3 edits each, at least
    one in all."""
    experiment = draw(st.sampled_from(RUNNABLE))
    doc = copy.deepcopy(SHIPPED)
    data_file = doc["experiments"][experiment]["dataset"]["file"]
    table = Table([row for row in csv.reader(io.StringIO(bundled[data_file].decode()))])
    n_params = draw(st.integers(0, 3))
    n_csv = draw(st.integers(0 if n_params else 1, 3))
    edits = [draw(params_edit(doc, experiment)) for _ in range(n_params)]
    edits += [draw(csv_edit(table)) for _ in range(n_csv)]
    return Case(experiment, edits, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), data_file,
                table.to_bytes())


@pytest.fixture(scope="module")
def bundled(bundled_data: Path) -> Bundled:
    """The runnable experiments' bundled CSVs, as written by `kerasflow data`."""
    return Bundled({name: (bundled_data.parent / name).read_bytes() for name in DATA_FILES})


@pytest.mark.slow
@pytest.mark.timeout(600 + 3 * EXAMPLES)
# Prefect's background threads draw from `random` while an example is drawn; Hypothesis takes that for the strategy's.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.data())
def test_fuzzed_params_and_csvs_are_refused_in_one_line_or_run(data: st.DataObject, bundled: Bundled,
                                                               configured_server: str, tmp_path_factory) -> None:
    """Each example: a fresh project (the shipped params.yaml, the bundled CSVs) with a few edits, one
    `kerasflow run <experiment> --smoke-test`, and the promise of docs/reliability.md checked on what it did."""
    case = data.draw(cases(bundled), label="case")
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as folder:
        project = Path(folder)
        (project / "data").mkdir()
        for name, content in bundled.items():
            (project / name).write_bytes(content)
        (project / case.data_file).write_bytes(case.data)
        (project / "params.yaml").write_text(case.params)
        before = snapshot(project)

        status, out, err = run_in_process(["run", case.experiment, "--smoke-test", "--results", "results"], project)

        written = changes(before, snapshot(project))
    note(f"kerasflow run {case.experiment} --smoke-test: exit status {status}\nstdout: {out[-2000:]!r}\n"
         f"stderr: {err[-4000:]!r}")
    event(f"exit status {status}")  # the share of examples that trained, in --hypothesis-show-statistics
    lines = err.rstrip("\n").split("\n")
    assert "Traceback" not in out + err
    assert status in (0, 2, 3), f"exit status {status}"
    if status == 2:
        assert out == "", "a refusal printed on stdout"
        assert len(lines) == 1, f"a refusal in {len(lines)} lines, not one"
        assert lines[0].startswith("kerasflow: error: ")
        assert written == {"created": [], "deleted": [], "changed": []}, "a refused run wrote"
    elif status == 3:
        assert lines == [line for line in lines if line.startswith("kerasflow: diverged: ")] and len(lines) == 1
    else:
        assert out.startswith(f"{case.experiment}: ")
