"""The report's tables, each built once as a pandas DataFrame of the cells it shows.

`markdown.py` and `html.py` render these same frames, and the flows publish them as Prefect table artifacts,
so a column or a number's format is decided here only. Cells are what a reader sees: numbers stay numbers (HTML
aligns them right), combined values (`0.9533 ± 0.0600`) are text, an absent value is an empty string. The
frames hold Python objects (`dtype=object`) so that the :class:`Missing` and :class:`Code` marks survive.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from kerasflow.tasks.outputs.metrics import PARAM_PREFIX
from kerasflow.tasks.report.collect import TIMING_STEPS, DataFacts, ExperimentReport, Report, Sweep

NOT_RUN = "not run yet"


class Missing(str):
    """Text standing in for a result that is absent (not run yet, data not read); HTML marks it."""


class Code(str):
    """A path as typed in `params.yaml`; HTML sets it in monospace."""


class Number(str):
    """A number as the report writes it (:func:`shown`: `0.0200`, its zeros kept); HTML aligns it as a number."""


def frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A table of `rows` with exactly `columns`, in that order; cells kept as the objects given."""
    return pd.DataFrame(rows, columns=columns, dtype=object)


def shown(value: float) -> str:
    """A score as the report shows it: 4 decimals, or 4 significant digits where the decimals would show zeros.

    Examples
    --------
    >>> shown(0.95333), shown(12.3), shown(0.000123456), shown(-0.0000071), shown(0.0)
    ('0.9533', '12.3000', '0.0001235', '-7.1e-06', '0.0000')
    """
    return f"{value:.4f}" if value == 0 or abs(value) >= 0.001 else f"{value:.4g}"


def score_text(metrics: dict[str, Any]) -> str:
    """`0.9533 ± 0.0600`; a hold-out's one score alone (`n_folds` 1: one score has no spread); or which folds
    diverged when the experiment has no mean.

    Examples
    --------
    >>> score_text({"mean": 0.95333, "std": 0.06, "n_folds": 10}), score_text({"mean": 0.947, "std": 0.0, "n_folds": 1})
    ('0.9533 ± 0.0600', '0.9470')
    """
    if metrics["mean"] is None:
        return f"diverged in fold(s) {metrics.get('diverged', [])}"
    if metrics["n_folds"] == 1:
        return shown(metrics["mean"])
    return f"{shown(metrics['mean'])} ± {shown(metrics['std'])}"


def best_score_text(best: dict[str, Any]) -> str:
    """A sweep's best score, `0.9420 ± 0.0017`, or that every config diverged (best.json then has no best)."""
    if best["score"] is None:
        return f"none: every config diverged ({best['n_configs']})"
    return f"{shown(best['score'])} ± {shown(best['score_std'])}"


def scores(report: Report) -> pd.DataFrame:
    """One row per experiment: its cross-validated score, folds, the naive forecast's score, wall time; then, where
    it has several target columns or labels, a row for each one's own scores."""
    rows = []
    for e in report.experiments:
        m = e.metrics
        if not m:
            rows.append({"experiment": e.name, "metric": Missing(NOT_RUN), "mean ± std": "", "95% interval": "",
                         "folds": "", "naive last value": "", "seconds": ""})
            continue
        baseline = m.get("baseline")
        # Early stopping: the range of the folds' trained epochs beside their count.
        epochs = m.get("epochs_run")
        folds = f"{m['n_folds']}, trained {min(epochs)}–{max(epochs)} epochs" if epochs else m["n_folds"]
        interval = report.intervals.get(e.name)
        if interval is not None:
            interval_text = f"[{shown(interval.low)}, {shown(interval.high)}]"
        elif "fold_settings" in m or m["n_folds"] < 2:
            interval_text = ""
        else:  # an older kerasflow's run.json does not say which folds its scores are on
            interval_text = Missing(f"none: run.json records no fold settings; kerasflow run {e.name} again")
        rows.append({"experiment": e.name, "metric": m["metric"], "mean ± std": score_text(m),
                     "95% interval": interval_text,
                     "folds": folds, "naive last value": round(baseline["mean"], 4) if baseline else "",
                     "seconds": m["seconds"]})
        scored = m.get("targets", {})
        # In the order dataset.target lists them (metrics.json sorts its keys), then any it no longer lists.
        listed = [target for target in e.spec.dataset.target_names if target in scored]
        for target in listed + [target for target in scored if target not in listed]:
            own = scored[target]
            # A target's scores have no mean where a fold diverged: the experiment's folds say which.
            rows.append({"experiment": f"{e.name}: {target}", "metric": m["metric"],
                         "mean ± std": score_text({"diverged": m.get("diverged", []), "n_folds": m["n_folds"], **own}),
                         "95% interval": "", "folds": "",
                         "naive last value": round(own["baseline"]["mean"], 4) if "baseline" in own else "",
                         "seconds": ""})
    return frame(rows, ["experiment", "metric", "mean ± std", "95% interval", "folds", "naive last value",
                        "seconds"])


def differences(report: Report) -> pd.DataFrame:
    """Every pair of experiments scored on the same folds: the second's score minus the first's, its 95% interval
    and p-value (corrected resampled t-test, as `kerasflow compare`), and what that says."""
    rows = [{"experiments": f"{c.names[1]} − {c.names[0]}", "metric": c.metric,
             "difference": Number(shown(c.difference.mean)),
             "95% interval": f"[{shown(c.difference.low)}, {shown(c.difference.high)}]",
             "p": float(f"{c.difference.p:.3g}"), "folds": c.difference.folds,
             "verdict": c.verdict + (" (few folds: little power)" if c.low_power else "")}
            for c in report.comparisons]
    return frame(rows, ["experiments", "metric", "difference", "95% interval", "p", "folds", "verdict"])


def best_interval_text(best: dict[str, Any]) -> str:
    """The best config's 95% interval over its folds, `[0.9310, 0.9530]`; empty where the sweep has none."""
    if best.get("score_low") is None:
        return ""
    return f"[{shown(best['score_low'])}, {shown(best['score_high'])}]"


def tie_text(best: dict[str, Any]) -> str:
    """Which configs the folds cannot tell from the best (`sweep.json`'s `tied`), as one sentence.

    Examples
    --------
    >>> tie_text({"score": 0.9, "tied": ["c1"], "n_configs": 1})
    'The sweep tried one config: there is none to compare it with.'
    >>> tie_text({"score": 0.9, "tied": ["c1"], "n_configs": 4})[:40]
    'Every other finished config is worse tha'
    >>> tie_text({"score": 0.9, "tied": ["c1"], "n_configs": 2, "n_stopped": 1})
    'The sweep finished one config: there is none to compare it with (1 failed, stopped or diverged: not compared).'
    """
    tied = best.get("tied") or []
    if best["score"] is None:
        return ""
    if not tied:
        return ("Configs are not paired fold by fold here (one hold-out split, or a space that changes the folds): "
                "no test tells them apart.")
    test = "corrected resampled t-test on the same folds"
    unfinished = sum(best.get(count, 0) for count in ("n_errors", "n_stopped", "n_diverged"))
    finished = best["n_configs"] - unfinished
    left = f" ({unfinished} failed, stopped or diverged: not compared)" if unfinished else ""
    if best["n_configs"] == 1:
        return "The sweep tried one config: there is none to compare it with."
    if finished == 1:
        return f"The sweep finished one config: there is none to compare it with{left}."
    if len(tied) == 1:
        return f"Every other finished config is worse than the best at 5% ({test}){left}."
    if len(tied) == finished:
        return (f"All {len(tied)} finished configs are statistically tied: the folds cannot tell any from the best "
                f"at 5% ({test}){left}.")
    return (f"These {len(tied)} configs are statistically tied: the folds cannot tell them from the best at 5% "
            f"({test}): {', '.join(tied)}{left}.")


def unfinished_text(e: ExperimentReport) -> str:
    """That the experiment's last sweep did not finish, and how to finish it; empty where it did.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> unfinished_text(SimpleNamespace(name="cancer", sweep=None, unfinished_sweep="2026-12-06T17:40:00+00:00"))[:78]
    'A sweep started 2026-12-06T17:40:00+00:00 has exported no results (it stopped,'
    """
    if e.unfinished_sweep is None:
        return ""
    earlier = " The results shown are an earlier sweep's." if e.sweep is not None else ""
    return (f"A sweep started {e.unfinished_sweep} has exported no results (it stopped, failed or is still "
            f"running): `kerasflow tune {e.name} --resume` finishes a stopped one.{earlier}")


def sweeps(report: Report) -> pd.DataFrame:
    """One row per sweep that has run: its size, its best trial with its interval, the configs tied with it, and
    its wall time; a sweep that has not finished is named in its own column."""
    rows = []
    for e in report.experiments:
        unfinished = {"unfinished": Missing(unfinished_text(e))} if e.unfinished_sweep is not None else {}
        if e.sweep is None:
            if unfinished:
                rows.append({"experiment": e.name, **unfinished})
            continue
        best = e.sweep.best
        # The configs of a stacked group share their Ray trial, and its seconds: count each trial once.
        trials = e.sweep.trials.drop_duplicates("trial_id") if "trial_id" in e.sweep.trials else e.sweep.trials
        trial_seconds = pd.to_numeric(trials["seconds"], errors="coerce")
        rows.append({"experiment": e.name, "configs": e.sweep.n_configs, "Ray trials": best["n_trials"],
                     "errors": best["n_errors"],
                     "best score ± std": f"{best['metric']} {best_score_text(best)}",
                     "95% interval": best_interval_text(best),
                     # The configs the folds cannot tell from the best, the best itself not counted.
                     "tied with best": len(best["tied"]) - 1 if best.get("tied") else "",
                     "best params": ", ".join(f"{k}={v}" for k, v in sorted((best["params"] or {}).items())),
                     # A resumed sweep's wall time is the resume's: the killed command's is nowhere recorded.
                     "seconds": f"{best['seconds']} (the resume's)" if best.get("resumed") else best.get("seconds", ""),
                     "trials' seconds": round(float(trial_seconds.sum()), 2),
                     **unfinished})
    columns = ["experiment", "configs", "Ray trials", "errors", "best score ± std", "95% interval", "tied with best",
               "best params", "seconds", "trials' seconds"]
    if any("unfinished" in row for row in rows):
        columns.append("unfinished")
    return frame(rows, columns).fillna("")


def data(report: Report) -> pd.DataFrame:
    """One row per experiment: its data file's shape, target, class balance or range, and DVC hash."""
    rows = []
    for e in report.experiments:
        d = e.data
        if d is None:
            rows.append({"experiment": e.name, "file": Code(e.spec.dataset.file),
                         "rows × columns": Missing(e.data_error or "data not read")})
            continue
        rows.append({"experiment": e.name, "file": Code(d.file), "rows × columns": f"{d.rows} × {d.columns}",
                     "target": d.target, "classes / target range": balance_text(d), "md5 (DVC)": hash_text(d)})
    return frame(rows, ["experiment", "file", "rows × columns", "target", "classes / target range",
                        "md5 (DVC)"]).fillna("")


def timing(report: Report) -> pd.DataFrame:
    """Wall time (seconds) of each evaluate stage that has run, step by step."""
    rows = [{"stage": f"evaluate@{e.name}", **{step: e.metrics["timing"].get(step, "") for step in TIMING_STEPS}}
            for e in report.experiments if e.metrics.get("timing")]
    return frame(rows, ["stage", *TIMING_STEPS])


def environment(report: Report) -> pd.DataFrame:
    """One row per distinct environment the experiments ran in, naming those experiments."""
    environments = report.environments()
    keys = list(dict.fromkeys(key for found, _ in environments for key in found))
    rows = [{"experiments": ", ".join(names), **found} for found, names in environments]
    return frame(rows, ["experiments", *keys]).fillna("")


def nested(report: Report) -> pd.DataFrame:
    """One row per sweep cross-validated with nesting (`kerasflow tune --nested K`): the tuned model's estimate,
    the outer scores' mean with its 95% interval, beside the inner best scores' mean and the sweep's own best."""
    rows = []
    for e in report.experiments:
        if e.nested is None:
            continue
        n, outer = e.nested, e.nested["outer"]
        rows.append({"experiment": e.name, "metric": n["metric"], "outer folds": n["outer_folds"],
                     "tuned model (outer mean)": "" if outer["mean"] is None else shown(outer['mean']),
                     "95% interval": "" if outer["low"] is None else f"[{shown(outer['low'])}, {shown(outer['high'])}]",
                     "inner best (mean)": shown(n['inner_best_mean']),
                     "sweep's best": "" if e.sweep is None or e.sweep.best["score"] is None
                     else shown(e.sweep.best['score']),
                     "configs chosen": n["configs_chosen"]})
    return frame(rows, ["experiment", "metric", "outer folds", "tuned model (outer mean)", "95% interval",
                        "inner best (mean)", "sweep's best", "configs chosen"])


def nested_folds(record: dict[str, Any]) -> pd.DataFrame:
    """A nested sweep's outer folds: the config each one's sweep chose, its inner best score, and its score on
    the outer held-out rows."""
    return frame([{"outer fold": fold["outer_fold"], "config": fold["config_id"],
                   "params": ", ".join(f"{k}={v}" for k, v in sorted(fold["params"].items())),
                   "inner best": shown(fold['inner_score']),
                   "outer score": "" if fold["outer_score"] is None else shown(fold['outer_score']),
                   "rows (train / held out)": f"{fold['n_train']} / {fold['n_test']}"} for fold in record["folds"]],
                 ["outer fold", "config", "params", "inner best", "outer score", "rows (train / held out)"])


def overview(report: Report) -> list[tuple[str, pd.DataFrame]]:
    """The report's cross-experiment tables with their titles, in order; a table with no rows is left out
    (no sweep, nothing run yet), except the scores and data, which list every experiment."""
    titled = [("Cross-validated scores", scores(report)),
              ("Differences on the same folds (corrected resampled t-test)", differences(report)),
              ("Sweeps", sweeps(report)), ("Tuned models: nested cross-validation", nested(report)),
              ("Data", data(report)),
              ("Wall time per stage (seconds)", timing(report)), ("Environment", environment(report))]
    return [(title, table) for title, table in titled if not table.empty]


def data_facts(e: ExperimentReport) -> pd.DataFrame:
    """An experiment's data file as `name | value` rows (shown without a header)."""
    d = e.data
    if d is None:
        return frame([{"name": "file", "value": Code(e.spec.dataset.file)},
                      {"name": "error", "value": Missing(e.data_error or "data not read")}], ["name", "value"])
    facts = [{"name": "file", "value": Code(d.file)}, {"name": "rows × columns", "value": f"{d.rows} × {d.columns}"},
             {"name": "target", "value": f"{d.target} ({d.task})"}, {"name": "md5 (DVC)", "value": hash_text(d)}]
    if e.spec.train.init_from is not None:  # a continued experiment: its start, and the preprocessing it reuses
        facts.append({"name": "continues from", "value": Code(e.spec.train.init_from)})
    return frame(facts, ["name", "value"])


def target_summary(d: DataFacts) -> pd.DataFrame:
    """Rows and share of each class, or the regression target's mean, std, min and max (each target's, named,
    where there are several)."""
    if d.classes is None:
        stats = d.target_stats or {}
        named = len(stats) > 1
        return frame([{"target": f"{target} {key}" if named else key, "value": f"{value:.4g}"}
                      for target, values in stats.items() for key, value in values.items()], ["target", "value"])
    # Labels share rows, and a text lists only its most frequent tokens: their shares are of all rows.
    total = d.rows if d.task in ("multilabel", "next_token") else sum(d.classes.values())
    return frame([{"class": label, "rows": count, "share": f"{count / total:.1%}"}
                  for label, count in d.classes.items()], ["class", "rows", "share"])


def trials(sweep: Sweep) -> pd.DataFrame:
    """A sweep's trials, best first: the searched parameters (dotted keys), score, its 95% interval, the p-value
    of its difference from the best and whether the folds tell it from the best (where configs pair fold by fold),
    epochs, seconds, status."""
    found = sweep.trials
    table = found[[c for c in found.columns if c.startswith(PARAM_PREFIX)]].astype(object)
    for column in ("score", "score_std"):
        if column in found:
            table[column] = [shown(value) if pd.notna(value) else "" for value in found[column]]
    if "score_low" in found and found["score_low"].notna().any():
        table["95% interval"] = [f"[{shown(low)}, {shown(high)}]" if pd.notna(low) else ""
                                 for low, high in zip(found["score_low"], found["score_high"])]
        table["p vs best"] = [f"{p:.3g}" if pd.notna(p) else "" for p in found["p_vs_best"]]
        table["tied with best"] = [{True: "yes", False: "no"}.get(tied, "") for tied in found["tied_with_best"]]
    if "epochs" in found:
        table["epochs"] = found["epochs"].astype(object)
    if "seconds" in found:
        table["seconds"] = [round(float(value), 2) if pd.notna(value) else "" for value in found["seconds"]]
    if "status" in found:
        table["status"] = found["status"].astype(object)
    # The searched values as the trials had them: a learning rate of 0.001 is not a score to round.
    return table.rename(columns=lambda c: c.removeprefix(PARAM_PREFIX)).fillna("")


def balance_text(d: DataFacts) -> str:
    """Class counts (`setosa 50, versicolor 50`) or the target's range (`mean 22.5, std 9.2, 5 to 50`; each
    target's, named, where there are several)."""
    if d.classes is not None:
        return ", ".join(f"{label} {count}" for label, count in d.classes.items())
    stats = d.target_stats or {}
    ranges = {target: f"mean {s['mean']:.4g}, std {s['std']:.4g}, {s['min']:.4g} to {s['max']:.4g}"
              for target, s in stats.items()}
    return "; ".join(f"{target}: {text}" if len(ranges) > 1 else text for target, text in ranges.items())


def hash_text(d: DataFacts) -> str:
    """The file's md5 and whether it is what DVC tracks."""
    if d.dvc_file is None:
        return f"{d.md5} (not tracked by DVC)"
    verdict = {True: "as recorded in", False: "differs from", None: "tracked by"}[d.matches_dvc]
    return f"{d.md5} ({verdict} {d.dvc_file} {d.dvc_md5})"
