"""The report as one self-contained HTML page: tables and PNG figures embedded as data URIs, no script, no
network resource, so it opens the same from a laptop, a CI artifact or a mail attachment."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from kerasflow.tasks.report import plots
from kerasflow.tasks.report.collect import (
    TIMING_STEPS,
    ExperimentReport,
    Report,
    balance_text,
    hash_text,
    summary_rows,
    sweep_rows,
    timing_rows,
)

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 60em;
       padding: 0 1em; color: #1a1a1a; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #d0d0d0; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eef7ee; } .missing { color: #a33; } code { font-size: 12px; }
img { max-width: 100%; height: auto; display: block; margin: .4em 0 1em; }
nav a { margin-right: .8em; }
"""


def render_html(report: Report) -> str:
    """The whole report: summary tables first, then one section per experiment."""
    body = ["<h1>kerasflow results</h1>",
            "<nav>" + "".join(f'<a href="#{_anchor(e.name)}">{escape(e.name)}</a>' for e in report.experiments)
            + "</nav>",
            "<h2>Cross-validated scores</h2>", _summary_table(report)]
    sweeps = sweep_rows(report)
    if sweeps:
        body += ["<h2>Sweeps</h2>",
                 _table(["experiment", "configs", "Ray trials", "errors", "best score ± std", "best params", "seconds",
                         "trials' seconds"],
                        [[r["experiment"], r["configs"], r["trials"], r["errors"],
                          f"{r['metric']} {r['score']:.4f} ± {r['score_std']:.4f}", r["params"], r["seconds"],
                          r["trial_seconds"]] for r in sweeps])]
    body += ["<h2>Data</h2>",
             _table(["experiment", "file", "rows × columns", "target", "classes / target range", "md5 (DVC 3)"],
                    [[e.name, _Raw(f"<code>{escape(e.data.file)}</code>"), f"{e.data.rows} × {e.data.columns}",
                      e.data.target, balance_text(e.data), hash_text(e.data)] if e.data is not None else
                     [e.name, _Raw(f"<code>{escape(str(e.spec.dataset.file))}</code>"),
                      _Raw(f'<span class="missing">{escape(e.data_error or "")}</span>'), "", "", ""]
                     for e in report.experiments])]
    timing = timing_rows(report)
    if timing:
        body += ["<h2>Wall time per stage (seconds)</h2>",
                 _table(["stage", *TIMING_STEPS], [[r["stage"], *(r[s] for s in TIMING_STEPS)] for r in timing])]
    environments = report.environments()
    if environments:
        keys = list(dict.fromkeys(key for environment, _ in environments for key in environment))
        body += ["<h2>Environment</h2>",
                 _table(["experiments", *keys], [[", ".join(names), *(environment.get(k, "") for k in keys)]
                                                 for environment, names in environments])]
    body += [_experiment_section(e) for e in report.experiments]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>kerasflow results</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _summary_table(report: Report) -> str:
    rows = []
    for row in summary_rows(report):
        if not row["metric"]:
            rows.append([row["experiment"], _Raw('<span class="missing">not run yet</span>'), "", "", "", ""])
        else:
            rows.append([row["experiment"], row["metric"], f"{row['mean']:.4f} ± {row['std']:.4f}", row["folds"],
                         row["baseline"], row["seconds"]])
    return _table(["experiment", "metric", "mean ± std", "folds", "naive last value", "seconds"], rows)


def _experiment_section(e: ExperimentReport) -> str:
    spec = e.spec
    parts = [f'<section id="{_anchor(e.name)}">', f"<h2>{escape(e.name)}</h2>",
             f"<p>{escape(spec.dataset.task)} on <code>{escape(str(spec.dataset.file))}</code>, "
             f"{escape(spec.evaluate.method)} evaluation, {len(spec.model.layers)} layers, "
             f"{spec.train.epochs} epochs of {escape(spec.train.optimizer)}.</p>"]
    if not e.has_run:
        parts.append('<p class="missing">Not run yet: no <code>metrics.json</code> for this experiment.</p>')
    else:
        m = e.metrics
        parts += ["<h3>Cross-validation</h3>",
                  f"<p>{escape(m['metric'])}: <strong>{m['mean']:.4f} ± {m['std']:.4f}</strong> over "
                  f"{m['n_folds']} fold(s){' (trained as one stacked model)' if m.get('stacked') else ''}.</p>",
                  _image(plots.fold_scores(m), f"{e.name}: {m['metric']} per fold")]
        if e.history is not None:
            parts += ["<h3>Learning curves</h3>",
                      _image(plots.learning_curves(e.history, m["metric"]), f"{e.name}: loss and {m['metric']} "
                             "per epoch, training and validation, every fold")]
        if e.predictions is not None:
            if e.is_classification:
                classes = list(e.data.classes) if e.data is not None and e.data.classes else sorted(
                    set(e.predictions["true"]) | set(e.predictions["predicted"]))
                parts += ["<h3>Confusion matrix</h3>",
                          _image(plots.confusion_matrix(e.predictions, classes), f"{e.name}: confusion matrix")]
            else:
                parts += ["<h3>Residuals</h3>",
                          _image(plots.residuals(e.predictions), f"{e.name}: residuals of held-out predictions")]
    parts += ["<h3>Data</h3>", _data_table(e)]
    if e.sweep is not None:
        parts += _sweep_parts(e)
    parts.append("</section>")
    return "\n".join(parts)


def _data_table(e: ExperimentReport) -> str:
    if e.data is None:
        return f'<p class="missing">{escape(e.data_error or "data not read")}</p>'
    d = e.data
    rows = [["file", _Raw(f"<code>{escape(d.file)}</code>")], ["rows × columns", f"{d.rows} × {d.columns}"],
            ["target", f"{d.target} ({d.task})"], ["md5 (DVC 3)", hash_text(d)]]
    table = _table(["", ""], rows, header=False)
    if d.classes is None:
        return table + _table(["target", "value"], [[k, f"{v:.4g}"] for k, v in (d.target_stats or {}).items()])
    total = sum(d.classes.values())
    return table + _table(["class", "rows", "share"],
                          [[label, count, f"{count / total:.1%}"] for label, count in d.classes.items()])


def _sweep_parts(e: ExperimentReport) -> list[str]:
    sweep = e.sweep
    best = sweep.best
    shown = [c for c in sweep.trials.columns if c.startswith("param:")] + [
        c for c in ("score", "score_std", "epochs", "seconds", "status") if c in sweep.trials.columns]
    rows = [[_format(value) for value in row] for row in sweep.trials[shown].itertuples(index=False)]
    return ["<h3>Sweep</h3>",
            f"<p>{sweep.n_configs} configs in {best['n_trials']} Ray trials ({best['n_errors']} failed), scored by "
            f"{escape(str(best['scoring']))}; "
            f"best {escape(best['metric'])} {best['score']:.4f} ± {best['score_std']:.4f} with "
            + ", ".join(f"<code>{escape(k)}={escape(str(v))}</code>" for k, v in sorted(best["params"].items()))
            + ". Trials best first:</p>",
            _table([c.removeprefix("param:") for c in shown], rows, first_row_class="best"),
            _image(plots.sweep_scores(sweep.trials, sweep.params, best["metric"]),
                   f"{e.name}: sweep score against each searched parameter")]


class _Raw(str):
    """Markup already escaped: a table cell that is put in as is."""


def _format(value: Any) -> Any:
    return f"{value:.4f}" if isinstance(value, float) else value


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], header: bool = True,
           first_row_class: str | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in headers) + "</tr>")
    for i, row in enumerate(rows):
        css = f' class="{first_row_class}"' if first_row_class and i == 0 else ""
        out.append(f"<tr{css}>" + "".join(_cell(value) for value in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, _Raw):
        return f"<td>{value}</td>"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f'<td class="num">{escape(str(value))}</td>' if numeric else f"<td>{escape(str(value))}</td>"


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _anchor(name: str) -> str:
    return "experiment-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
