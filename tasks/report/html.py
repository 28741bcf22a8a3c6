"""The report as one self-contained HTML page: tables and PNG figures embedded as data URIs, no script, no
network resource, so it opens the same from a laptop, a CI artifact or a mail attachment.

Tables are those of `tables.py`, rendered by pandas' Styler; figures are those of `plots.py`.
"""

from __future__ import annotations

import base64
from html import escape

import pandas as pd
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from kerasflow.tasks.report import plots, tables
from kerasflow.tasks.report.collect import ExperimentReport, Report

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 60em;
       padding: 0 1em; color: #1a1a1a; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #d0d0d0; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { background: #eef7ee; } .missing { color: #a33; }
code, td.code { font: 12px ui-monospace, monospace; }
img { max-width: 100%; height: auto; display: block; margin: .4em 0 1em; }
nav a { margin-right: .8em; }
"""


def render_html(report: Report) -> str:
    """The whole report: the overview's tables first, then one section per experiment."""
    body = ["<h1>kerasflow results</h1>",
            "<nav>" + "".join(f'<a href="#{_anchor(e.name)}">{escape(e.name)}</a>' for e in report.experiments)
            + "</nav>"]
    for title, table in tables.overview(report):
        body += [f"<h2>{escape(title)}</h2>", html_table(table, "overview-" + _slug(title))]
    body += [_experiment_section(e) for e in report.experiments]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>kerasflow results</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def html_table(table: pd.DataFrame, name: str, header: bool = True, best_first: bool = False) -> str:
    """`table` as an HTML table with the id `T_<name>`: text escaped, backticked spans as code, numbers
    right-aligned, absent results and paths marked; with `best_first`, the first row highlighted."""
    classes = table.map(_cell_class)
    if best_first and len(table):
        classes.iloc[0] = classes.iloc[0] + " best"
    # Text escaped, its `backticked` commands set as code, as the Markdown summary shows them.
    styler = Styler(table, uuid=name, cell_ids=False).hide(axis="index").format(
        formatter=lambda value: _code_spans(str(value)))
    if not header:
        styler = styler.hide(axis="columns")
    markup = styler.set_td_classes(classes).to_html()
    # The Styler's own <style> block is empty here: every look is the page's stylesheet's.
    return markup.removeprefix('<style type="text/css">\n</style>\n')


def _cell_class(value: object) -> str:
    if isinstance(value, tables.Missing):
        return "missing"
    if isinstance(value, tables.Code):
        return "code"
    return "num" if isinstance(value, (int, float, tables.Number)) and not isinstance(value, bool) else ""


def _experiment_section(e: ExperimentReport) -> str:
    spec = e.spec
    parts = [f'<section id="{_anchor(e.name)}">', f"<h2>{escape(e.name)}</h2>",
             (f"<p>{escape(spec.dataset.task)} on <code>{escape(str(spec.dataset.file))}</code>, "
              f"{escape(spec.evaluate.method)} evaluation, {len(spec.model.layers)} layers, "
              f"{spec.train.epochs} epochs of {escape(spec.train.optimizer_name)}.</p>")]
    if not e.has_run:
        parts.append('<p class="missing">Not run yet: no <code>metrics.json</code> for this experiment (a run '
                     'removes the previous one as it starts, and one stopped before its end writes none).</p>')
    else:
        m = e.metrics
        parts += ["<h3>Cross-validation</h3>",
                  (f"<p>{escape(m['metric'])}: <strong>{escape(tables.score_text(m))}</strong> "
                   + ("on the held-out rows" if m["n_folds"] == 1 else f"over {m['n_folds']} folds")
                   + f"{' (trained as one stacked model)' if m.get('stacked') else ''}.</p>")]
        if m["mean"] is not None:
            parts.append(_image(plots.fold_scores(m), f"{e.name}: {m['metric']} per fold"))
        if e.history is not None:
            parts += ["<h3>Learning curves</h3>",
                      _image(plots.learning_curves(e.history, m["metric"]), f"{e.name}: loss and {m['metric']} "
                             "per epoch, training and validation: mean over folds ± std, single folds faint")]
        # A diverged fold's predictions are NaN; a text's tokens are too many classes for a readable matrix.
        if e.predictions is not None and m["mean"] is not None and spec.dataset.task != "next_token":
            if spec.dataset.task == "multilabel" and "target" in e.predictions:  # a matrix a label: 1 applies
                parts += ["<h3>Confusion matrices</h3>"] + [
                    _image(plots.confusion_matrix(rows, ["0", "1"], title=str(label)),
                           f"{e.name}: confusion matrix of label {label}")
                    for label, rows in e.predictions.groupby("target", sort=False)]
            elif e.is_classification:
                known = list(e.data.classes) if e.data is not None and e.data.classes else []
                classes = matrix_classes(known, e.predictions)
                parts += ["<h3>Confusion matrix</h3>",
                          _image(plots.confusion_matrix(e.predictions, classes), f"{e.name}: confusion matrix")]
            elif "target" in e.predictions:  # several targets, each in its own units
                parts += ["<h3>Residuals</h3>"] + [
                    _image(plots.residuals(rows, title=str(target)),
                           f"{e.name}: residuals of held-out predictions of {target}")
                    for target, rows in e.predictions.groupby("target", sort=False)]
            else:
                parts += ["<h3>Residuals</h3>",
                          _image(plots.residuals(e.predictions), f"{e.name}: residuals of held-out predictions")]
    if e.augmented is not None:
        parts += ["<h3>Augmented training images</h3>",
                  _image(plots.augmented_grid(e.augmented), f"{e.name}: training images, each then augmented as "
                         "the training draws them")]
    parts += ["<h3>Data</h3>", html_table(tables.data_facts(e), f"{_anchor(e.name)}-data", header=False)]
    if e.data is not None:
        parts.append(html_table(tables.target_summary(e.data), f"{_anchor(e.name)}-target"))
    if e.sweep is not None or e.unfinished_sweep is not None:
        parts += _sweep_parts(e)
    if e.nested is not None:
        parts += _nested_parts(e)
    parts.append("</section>")
    return "\n".join(parts)


def _sweep_parts(e: ExperimentReport) -> list[str]:
    parts = ["<h3>Sweep</h3>"]
    if e.unfinished_sweep is not None:
        parts.append(f'<p class="missing">{_code_spans(tables.unfinished_text(e))}</p>')
    sweep = e.sweep
    if sweep is None:
        return parts
    best = sweep.best
    interval = tables.best_interval_text(best)
    return parts + [
        f"<p>{sweep.n_configs} configs in {best['n_trials']} Ray trials ({best['n_errors']} failed"
        + (f", {best['n_stopped']} stopped by ASHA" if best.get("n_stopped") else "") + "), scored by "
        f"{escape(str(best['scoring']))}; "
        f"best {escape(best['metric'])} {escape(tables.best_score_text(best))}"
        + (f" (95% interval {escape(interval)})" if interval else "")
        + "".join(f"{' with ' if i == 0 else ', '}<code>{escape(k)}={escape(str(v))}</code>"
                  for i, (k, v) in enumerate(sorted((best["params"] or {}).items())))
        + f". {escape(tables.tie_text(best))} Trials best first:</p>",
        # Where every config diverged there is no best to highlight.
        html_table(tables.trials(sweep), f"{_anchor(e.name)}-trials", best_first=best["score"] is not None),
        _image(plots.sweep_scores(sweep.trials, sweep.params, best["metric"]),
               f"{e.name}: sweep score against each searched parameter")]


def _nested_parts(e: ExperimentReport) -> list[str]:
    n = e.nested
    outer = n["outer"]
    estimate = "none (a refit diverged)" if outer["mean"] is None else \
        f"{tables.shown(outer['mean'])}, 95% interval [{tables.shown(outer['low'])}, {tables.shown(outer['high'])}]"
    return ["<h3>Nested cross-validation</h3>",
            f"<p>The whole sweep ran in each of {n['outer_folds']} outer folds on its training rows; its best config, "
            f"retrained there, was scored once on the held-out rows. Tuned model's {escape(n['metric'])}: "
            f"<strong>{escape(estimate)}</strong>, against {tables.shown(n['inner_best_mean'])} for the inner best "
            f"scores (the best of many configs on the same folds flatters itself). {n['configs_chosen']} different "
            f"config(s) won the outer folds:</p>",
            html_table(tables.nested_folds(n), f"{_anchor(e.name)}-nested")]


def _image(figure: Figure, alt: str) -> str:
    png = base64.b64encode(plots.to_png(figure)).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{png}">'


def _code_spans(text: str) -> str:
    """`text` escaped, its `backticked` spans (commands, as the Markdown summary shows them) set as code.

    Examples
    --------
    >>> _code_spans("run `kerasflow tune a<b` again")
    'run <code>kerasflow tune a&lt;b</code> again'
    """
    pieces = escape(text).split("`")
    return "".join(f"<code>{piece}</code>" if i % 2 else piece for i, piece in enumerate(pieces))


def _anchor(name: str) -> str:
    """The id of experiment `name`'s section."""
    return "experiment-" + _slug(name)


def _slug(text: str) -> str:
    """`text` fit for an HTML id: letters, digits, `-` and `_` only."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


def matrix_classes(known: list[str], predictions: pd.DataFrame) -> list[str]:
    """The confusion matrix's classes: the data file's (`known`, in its order), then any class the run's rows hold
    that the file no longer does (edited since the run, or a continued model's): a matrix drops the rows of classes
    it is not given.

    Examples
    --------
    >>> matrix_classes(["b", "a"], pd.DataFrame({"true": ["a", "c"], "predicted": ["b", "d"]}))
    ['b', 'a', 'c', 'd']
    """
    return known + sorted((set(predictions["true"]) | set(predictions["predicted"])) - set(known))
