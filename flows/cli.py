"""The `kerasflow` command: the only place that parses arguments.

Bad input (params, data) exits with status 2 and one message naming the file and key; nothing is written.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

from kerasflow.flows.local_server import LocalServer
from kerasflow.flows.prefect_server import TemporaryServer, check_configured_api, lost_server
from kerasflow.tasks.config.backend import choose_backend, hide_retracing_warnings, set_backend_defaults
from kerasflow.tasks.config.errors import KerasflowError, ParamsError
from kerasflow.tasks.config.messages import one_line
from kerasflow.tasks.config.schema import ExperimentSpec, Params, load_params
from kerasflow.tasks.config.search import SearchSpec
from kerasflow.tasks.outputs.atomic import check_output
from kerasflow.tasks.outputs.metrics import TRIALS_FILE, check_records

DEFAULT_REPORT = Path("reports/summary.md")
RESULTS = Path("results")
"""Every command's results folder unless --results names another (`run --smoke-test`: a new temporary one)."""
DIVERGED = 3
"""The exit status of a run that finished but whose training diverged in some fold: a result, not a crash."""
INTERRUPTED = 130
"""The exit status of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports a command it interrupted)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kerasflow", description=(
        "Reproducible Keras experiments: DVC pipelines, Prefect flows, k-fold evaluation."))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="the experiments file (default: params.yaml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="write the bundled datasets to data/ as CSV (deterministic bytes)")
    data.add_argument("--out", type=Path, default=Path("data"), help="folder to write to (default: data)")

    commands.add_parser("list", help="list the experiments in the params file")

    run = commands.add_parser("run", help="cross-validate, refit and save experiments (default: all)")
    run.add_argument("experiments", nargs="*", metavar="EXPERIMENT")
    run.add_argument("--results", type=Path, default=None,
                     help="results folder (default: results; with --smoke-test a new temporary folder)")
    run.add_argument("--report", type=Path, default=None,
                     help=f"also write the Markdown summary here (e.g. {DEFAULT_REPORT}) and report.html beside it")
    run.add_argument("--smoke-test", action="store_true",
                     help="2 folds, 1 epoch, no refit (but of a model a continued experiment of the run starts "
                          "from): checks the wiring in seconds, leaving the results folder as it is unless "
                          "--results names it")

    tune = commands.add_parser("tune", help="Ray Tune sweep of an experiment's `sweeps:` section")
    tune.add_argument("experiment", metavar="EXPERIMENT")
    tune.add_argument("--results", type=Path, default=RESULTS, help="results folder (default: results)")
    tune.add_argument("--resume", action="store_true", help="finish an interrupted sweep; finished trials stay")
    tune.add_argument("--verbose", action="store_true",
                      help="show the trials' own output (Keras, Ray's workers); they then train in their own "
                           "processes, not in a kept-running Ray's warm trainers")
    tune.add_argument("--dvc-exp", action="store_true",
                      help="also save each config as a DVC experiment (dvc exp show lists them, dvc exp apply one)")
    tune.add_argument("--nested", type=int, default=None, metavar="K",
                      help="nested cross-validation instead: the sweep in each of K outer folds, its best scored on "
                           "the held-out rows (the tuned model's honest estimate, in tune/nested.json)")

    predict = commands.add_parser("predict", help="apply a saved or registered model to new rows of a CSV")
    predict.add_argument("--model", required=True, metavar="MODEL",
                         help="a saved model folder (results/<experiment>/model), or a model dvc.yaml registers: "
                              "NAME (its latest version), NAME@vX.Y.Z or NAME#STAGE")
    predict.add_argument("--input", type=Path, required=True, metavar="CSV",
                         help="rows with the training feature columns (the target columns may be present); for a "
                              "model trained on a folder, a folder of image or text files (or one): the output's "
                              "`file` column names each")
    predict.add_argument("--output", type=Path, required=True, metavar="CSV",
                         help="where to write `prediction` (and `proba_<class>` columns for classification; "
                              "`prediction_<target>` for several targets, `prediction_<label>` and "
                              "`proba_<label>` for multilabel)")

    schedule = commands.add_parser("schedule", help="deploy experiments to a Prefect work pool on a cron schedule")
    schedule.add_argument("experiments", nargs="+", metavar="EXPERIMENT")
    schedule.add_argument("--cron", required=True, help='when to run, e.g. "0 3 * * *" (03:00 every day, UTC)')
    schedule.add_argument("--results", type=Path, default=RESULTS, help="results folder (default: results)")
    schedule.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                          help=f"the summary report each run writes (default: {DEFAULT_REPORT})")
    schedule.add_argument("--serve", action="store_true",
                          help="serve the schedule from this command instead (blocks; Ctrl-C stops)")

    server = commands.add_parser("server", help="the local Prefect server (with its scheduler and workers) that "
                                                "kerasflow runs when no PREFECT_API_URL is set")
    server.add_argument("action", choices=["start", "stop", "status"])
    server.add_argument("--port", type=int, default=None, help="start: the port (default: 4200 if free)")

    gen = commands.add_parser("generate", help="text from a saved next_token model, after a prompt")
    gen.add_argument("--model", required=True, metavar="DIR", help="a model folder (results/<experiment>/model)")
    gen.add_argument("--prompt", required=True, help="the text the generated text follows")
    gen.add_argument("--length", type=int, required=True, help="tokens to generate (characters or words)")
    gen.add_argument("--temperature", type=float, default=1.0, help="below 1 safer, above 1 more varied (default 1)")
    gen.add_argument("--seed", type=int, default=0, help="the same seed gives the same text (default 0)")
    gen.add_argument("--output", type=Path, default=None, metavar="FILE", help="write the text here (default: stdout)")

    comp = commands.add_parser("compare", help="two experiments' scores on the same folds: the difference, its "
                                               "95%% interval and p-value (corrected resampled t-test)")
    comp.add_argument("experiments", nargs=2, metavar="EXPERIMENT")
    comp.add_argument("--metric", default=None, help="the metric both were scored on (default: theirs)")
    comp.add_argument("--results", type=Path, default=RESULTS, help="results folder (default: results)")
    comp.add_argument("--json", action="store_true", help="print the comparison as JSON, for scripts")

    rep = commands.add_parser("report", help="every experiment as one HTML page (plots embedded) and a Markdown "
                                             "summary")
    rep.add_argument("--results", type=Path, default=RESULTS, help="results folder (default: results)")
    rep.add_argument("--out", type=Path, default=DEFAULT_REPORT,
                     help=f"the Markdown summary (default: {DEFAULT_REPORT})")
    rep.add_argument("--html", type=Path, default=None,
                     help="the HTML report (default: report.html in the folder of --out)")
    return parser


def smoke(spec: ExperimentSpec, refit: bool = False) -> ExperimentSpec:
    """The same experiment cut to the least work that still runs every step: no refit, unless `refit` (a model
    another experiment of the command continues from)."""
    evaluate = spec.evaluate.model_copy(update={"n_splits": 2, "n_repeats": 1, "refit": refit})
    train = spec.train.model_copy(update={"epochs": 1})
    return spec.model_copy(update={"evaluate": evaluate, "train": train})


def smoke_run(experiments: dict[str, ExperimentSpec], results_dir: Path | None
              ) -> tuple[dict[str, ExperimentSpec], Path]:
    """`run --smoke-test`'s experiments (:func:`smoke`) and the folder they write to: `results_dir`, or with none
    given a new temporary folder, so that a check of the wiring leaves the pipeline's results (DVC's outputs) as
    they are. There, a continued experiment whose model another experiment of the command writes
    (`results/<name>/model`) starts from that one's smoke model."""
    from kerasflow.tasks.training.start import model_writers

    writers = model_writers(experiments, results_dir or RESULTS)
    # Named, not made: the run makes it as it writes, so a refused run leaves no folder behind.
    folder = results_dir or Path(tempfile.gettempdir(), f"kerasflow-smoke-{uuid.uuid4().hex[:12]}")
    quick = {name: smoke(spec, refit=name in writers.values()) for name, spec in experiments.items()}
    if results_dir is None:
        for name, writer in writers.items():
            train = quick[name].train.model_copy(update={"init_from": str(folder / writer / "model")})
            quick[name] = quick[name].model_copy(update={"train": train})
    return quick, folder


def check_data(experiments: dict[str, ExperimentSpec], results_dir: Path | None = None) -> None:
    """Load, encode and split every experiment's data, the refit's rows too (no training), before any flow starts:
    bad data then stops the command with one message, before Prefect starts and before any experiment writes a
    result.

    A model with a pretrained base is built, which reads its weights file. A continued experiment is checked
    against the saved model it starts from, unless that is the model an earlier experiment of the same command
    writes (`results_dir/<name>/model`): then its data file is read now, and its fit with the model checked once
    that one is written. One that starts from the folder an earlier experiment of the command empties, as it saves
    no model (`evaluate.refit: false`), is refused.
    """
    from kerasflow.tasks.config.schema import experiment_key
    from kerasflow.tasks.data.tokens import load_rows
    from kerasflow.tasks.training import evaluate
    from kerasflow.tasks.training.models import build_model
    from kerasflow.tasks.training.start import load_start, model_writers

    writers = model_writers(experiments, results_dir) if results_dir is not None else {}
    order = list(experiments)
    for name, spec in experiments.items():
        writer = writers.get(name)
        earlier = writer is not None and order.index(writer) < order.index(name)
        # With no refit, the earlier experiment removes an earlier run's model: it is not its own.
        if earlier and not experiments[writer].evaluate.refit:
            raise ParamsError(f"{experiment_key(spec, name, 'train.init_from')}: {spec.train.init_from} is the model "
                              f"folder of {writer!r}, which this command runs before {name!r} and which saves no "
                              f"model (evaluate.refit: false), so it removes the one there: run {name!r} without "
                              f"{writer!r}, or let {writer!r} refit")
        if earlier:
            load_rows(spec)
        else:
            start = load_start(spec, name)
            table = load_rows(spec)
            labels = evaluate.encode_labels(spec, table, name, start)
            folds = evaluate.prepare_folds(spec, table, labels, start)
            if spec.evaluate.refit:  # its validation split and the preprocessing fitted on the rows before it
                evaluate.refit_data(spec, table, labels, start)
            if spec.model.pretrained:  # a keras.applications base: its input size and weights file, checked now
                build_model(spec.model, folds[0].X_train.shape[1], spec.train.seed)


FLOW_COMMANDS = ("run", "tune", "report")
"""The commands that run flows and need a Prefect server only while they run: the local server if one is running
(flows/local_server.py), else a temporary server started early (see `main`). Not `schedule`, which needs a server
with a scheduler that outlives it."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Before anything imports TensorFlow or JAX: TensorFlow quiet, deterministic, the same kernels on every CPU; JAX's
    # compiled programs kept for the next run (tasks/config/backend.py).
    set_backend_defaults()
    hide_retracing_warnings()
    # Nothing leaves the machine: the local server's telemetry would only fail without a network anyway.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # No server in the environment: the local server kerasflow keeps if it is running, else Prefect's temporary one,
    # started now to boot during the imports (used only if Prefect's settings name no server either; see
    # flows/prefect_server.py).
    server = None
    if args.command in FLOW_COMMANDS and not os.environ.get("PREFECT_API_URL"):
        if (local := LocalServer.running()) is not None:
            os.environ["PREFECT_API_URL"] = local.url
        else:
            server = TemporaryServer.launch()
    try:
        check_outputs(args)
        choose_backend(args.params)
        return _dispatch(args, server)
    except KerasflowError as exc:
        print(f"kerasflow: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:
        if (lost := lost_server(exc)) is None:
            raise
        print(f"kerasflow: error: {lost}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # every result is whole or not written (tasks/outputs/atomic.py)
        resume = f"; `kerasflow tune {args.experiment} --resume` finishes the sweep" if args.command == "tune" else ""
        print(f"kerasflow: interrupted{resume}", file=sys.stderr)
        return INTERRUPTED
    finally:
        if server is not None:
            server.stop()


def check_results(results: Path, names: Iterable[str]) -> None:
    """Refuse a record of experiments `names` in `results` that is no longer kerasflow's JSON (a merge's conflict
    markers) before any work: the report the command writes at its end reads them."""
    for name in names:
        check_records(results / name)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse the command's output paths that cannot be written as it writes them (a folder where a file goes, the
    reverse, a path under a file) before any work: nothing is computed only to fail at the write, and no folder is
    taken for a file's path."""
    folders = {"data": ["out"], "run": ["results"], "tune": ["results"], "schedule": ["results"],
               "report": ["results"]}.get(args.command, [])
    files = {"run": ["report"], "schedule": ["report"], "report": ["out"], "generate": ["output"],
             "predict": ["output"]}.get(args.command, [])
    for name in folders:
        folder = getattr(args, name)
        if folder is None and args.command == "run" and not args.smoke_test:
            folder = RESULTS  # `run`'s default; `run --smoke-test`'s is a new temporary folder
        if folder is not None:
            check_output(folder, folder=True)
    for path in [*(getattr(args, name) for name in files), html_report(args)]:
        if path is not None:
            check_output(path)


def html_report(args: argparse.Namespace) -> Path | None:
    """The HTML report the command writes: `report --html`, else report.html beside its Markdown report
    (`report --out`, `run` and `schedule --report`); None for a command that writes none."""
    markdown = {"report": "out", "run": "report", "schedule": "report"}.get(args.command)
    if markdown is None or getattr(args, markdown) is None:
        return None
    return getattr(args, "html", None) or getattr(args, markdown).with_name("report.html")


def _prefect_ready(server: TemporaryServer | None) -> None:
    """Called just before the first flow: a server Prefect's settings name must answer; if they name none, the flows
    use the early-started server."""
    check_configured_api()
    if server is not None:
        server.use()


def _dispatch(args: argparse.Namespace, server: TemporaryServer | None) -> int:
    """Run the command `args` names; its exit status."""
    if args.command in WITHOUT_PARAMS:
        return WITHOUT_PARAMS[args.command](args)
    # `list`, `compare` and `report` build no model: Keras' own names are not checked, so they start without
    # importing Keras (the report imports it only to draw an image experiment's augmented examples).
    params = load_params(args.params, check_keras_names=args.command not in ("list", "compare", "report"))
    for note in params.notes:
        print(f"kerasflow: note: {note}", file=sys.stderr)
    return WITH_PARAMS[args.command](args, params, server)


def _data(args: argparse.Namespace) -> int:
    from kerasflow.tasks.data.bundled import write_bundled

    for path in write_bundled(args.out):
        print(path)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from kerasflow.tasks.outputs.predict import predict_csv
    from kerasflow.tasks.outputs.registry import model_folder

    # Needs no params file: the model folder records everything the prediction depends on.
    with model_folder(args.model) as folder:
        print(predict_csv(folder, args.input, args.output))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from kerasflow.tasks.outputs.atomic import command_output
    from kerasflow.tasks.outputs.generate import generate_text

    text = generate_text(args.model, args.prompt, args.length, args.temperature, args.seed)
    if args.output is None:
        print(text)
        return 0
    with command_output(args.output) as tmp:
        tmp.write_text(text)
    print(args.output)
    return 0


def _list(args: argparse.Namespace, params: Params, server: TemporaryServer | None) -> int:
    for name, spec in params.every_experiment.items():
        print(f"{name}\t{spec.dataset.file}\t{spec.dataset.task}\t{spec.evaluate.method}")
    return 0


def _compare(args: argparse.Namespace, params: Params, server: TemporaryServer | None) -> int:
    from kerasflow.tasks.report.compare import compare

    params.select(args.experiments, source=str(args.params))  # refuses unknown names
    first, second = args.experiments
    comparison = compare((first, second), args.results, args.metric)
    print(json.dumps(comparison.as_dict(), indent=2, allow_nan=False) if args.json else comparison.table())
    return 0


def _report(args: argparse.Namespace, params: Params, server: TemporaryServer | None) -> int:
    from kerasflow.flows.report import report_flow  # no training code: the report starts without Keras

    html = html_report(args)
    check_results(args.results, params.every_experiment)
    _prefect_ready(server)
    report_flow(params.every_experiment, args.results, args.out, html)
    print(args.out)
    print(html)
    return 0


def _tune(args: argparse.Namespace, params: Params, server: TemporaryServer | None) -> int:
    from kerasflow.flows.sweep import sweep_flow
    from kerasflow.tasks.outputs.mlflow_runs import tracking_uri
    from kerasflow.tasks.outputs.tensorboard import logdir

    (name, spec), = params.select([args.experiment], source=str(args.params)).items()
    if name not in params.sweeps:
        raise ParamsError(f"{args.params}: experiment {name!r} has no sweeps.{name} section; "
                          f"sweeps are defined for: {', '.join(params.sweeps) or 'none'}")
    from kerasflow.tasks.sweep.groups import scoring_spec

    if args.nested is not None:
        return nested(args, name, spec, params.sweeps[name], server, params.tracking.tensorboard)
    check_data({name: scoring_spec(spec, params.sweeps[name])})
    check_results(args.results, [name])
    mlflow_uri = tracking_uri(params.tracking.mlflow, str(args.params))
    tensorboard = logdir(params.tracking.tensorboard, str(args.params))
    if args.dvc_exp:
        from kerasflow.tasks.sweep.dvc_experiments import check_repository

        check_repository(Path.cwd(), args.params, args.results / name / "tune")
    from kerasflow.flows.ray_cluster import connect
    from kerasflow.flows.ray_driver import check_cluster, check_settings, restore_sweep, storage_folder

    # Resources no node has, and a resume with nothing saved or saved by another version, are refused here, in one
    # line, not inside the flow's task with its tracebacks.
    out = args.results / name / "tune"
    storage = storage_folder(out)
    if args.resume:
        restore_sweep(name, storage)
        check_settings(name, storage, spec, params.sweeps[name])
    connect(verbose=args.verbose)
    check_cluster(name, params.sweeps[name], storage, tensorboard)
    _prefect_ready(server)
    best = sweep_flow(name, spec, params.sweeps[name], args.results, args.resume,
                      args.params if args.dvc_exp else None, mlflow_uri, tensorboard)
    if best["diverged"]:
        print(f"kerasflow: diverged: sweeps.{name}: the loss became NaN or infinite in every one of its "
              f"{best['n_configs']} configs; {out / TRIALS_FILE} lists them and no model is saved (lower "
              f"train.learning_rate, or scale the data with preprocess.scale)", file=sys.stderr)
        return DIVERGED
    spread = " on the held-out rows" if best["scoring"] == "holdout" else f" ± {best['score_std']:.4f}"
    print(f"{name}: best {best['metric']} {best['score']:.4f}{spread} with {best['params']} "
          f"({best['n_configs']} configs in {best['n_trials']} Ray trials"
          f"{f', {n} diverged' if (n := best['n_diverged']) else ''}) -> {out}")
    if "dvc_experiments" in best:
        print(f"{name}: {len(best['dvc_experiments'])} configs saved as DVC experiments (dvc exp show): "
              f"{', '.join(best['dvc_experiments'])}")
    if "refit_diverged_at" in best:
        print(f"kerasflow: diverged: sweeps.{name}: the best config's refit on all rows: the loss became NaN or "
              f"infinite at epoch {best['refit_diverged_at']}; no model is saved ({out / 'sweep.json'})",
              file=sys.stderr)
        return DIVERGED
    return 0


def _schedule(args: argparse.Namespace, params: Params, server: TemporaryServer | None) -> int:
    from kerasflow.flows.schedule import check_cron
    from kerasflow.tasks.outputs.mlflow_runs import tracking_uri
    from kerasflow.tasks.outputs.tensorboard import logdir

    selected = params.select(args.experiments, source=str(args.params))
    check_cron(args.cron)
    check_data(selected, args.results)
    tracking_uri(params.tracking.mlflow, str(args.params))  # each scheduled run logs there: refused now if not
    logdir(params.tracking.tensorboard, str(args.params))
    schedule(args, list(selected))
    return 0


def _run(args: argparse.Namespace, params: Params, server: TemporaryServer | None) -> int:
    from kerasflow.tasks.outputs.mlflow_runs import tracking_uri
    from kerasflow.tasks.outputs.tensorboard import logdir

    selected = params.select(args.experiments, source=str(args.params))
    results = args.results or RESULTS
    if args.smoke_test:
        selected, results = smoke_run(selected, args.results)
    check_data(selected, results)
    check_results(results, selected)
    mlflow_uri = tracking_uri(params.tracking.mlflow, str(args.params))
    tensorboard = logdir(params.tracking.tensorboard, str(args.params))
    check_fold_tasks(selected)
    from kerasflow.flows.pipeline import pipeline_flow

    _prefect_ready(server)
    summaries = pipeline_flow(selected, results, args.report, mlflow_uri, tensorboard)
    diverged = []
    for name, summary in summaries.items():
        if summary["mean"] is not None:
            print(f"{name}: {score_line(summary)} -> {results / name}")
        if message := divergence(name, summary):
            diverged.append(message)
    for message in diverged:
        print(f"kerasflow: diverged: {message}", file=sys.stderr)
    return DIVERGED if diverged else 0


def check_fold_tasks(selected: dict[str, ExperimentSpec]) -> None:
    """Join or start Ray for experiments whose folds train as Ray tasks, and refuse here, in one line, tasks no
    node can run: inside the flow they would wait forever."""
    from kerasflow.tasks.training.evaluate import folds_on_ray

    on_ray = [spec for spec in selected.values() if folds_on_ray(spec)]
    if on_ray:
        from kerasflow.flows.ray_folds import check_resources, spreads

        for spec in on_ray:
            if spreads(spec):
                check_resources(spec)


def nested(args: argparse.Namespace, name: str, spec: ExperimentSpec, sweep: SearchSpec,
           server: TemporaryServer | None, tensorboard_folder: str | None) -> int:
    """`kerasflow tune NAME --nested K`: nested cross-validation of the sweep, its estimate printed; with
    `tensorboard_folder` (params.yaml's tracking.tensorboard), each outer fold's sweep logged there."""
    from kerasflow.flows.ray_cluster import connect
    from kerasflow.flows.ray_driver import check_cluster, storage_folder
    from kerasflow.flows.sweep import nested_sweep_flow
    from kerasflow.tasks.outputs.metrics import NESTED_FILE
    from kerasflow.tasks.outputs.tensorboard import logdir
    from kerasflow.tasks.sweep.groups import scoring_spec
    from kerasflow.tasks.sweep.nested import check_nested, check_outer_folds

    for flag, given in (("--resume", args.resume), ("--dvc-exp", args.dvc_exp)):
        if given:
            raise ParamsError(f"--nested and {flag}: a nested sweep runs whole and keeps no configs as experiments; "
                              f"give one or the other")
    check_nested(name, spec, args.nested)
    check_data({name: scoring_spec(spec, sweep)})
    swept_folds = any(key.startswith("evaluate.") for key in sweep.space)
    check_outer_folds(name, spec, args.nested, None if swept_folds else scoring_spec(spec, sweep))
    tensorboard = logdir(tensorboard_folder, str(args.params))
    connect(verbose=args.verbose)
    check_cluster(name, sweep, storage_folder(args.results / name / "tune" / "nested"), tensorboard)
    _prefect_ready(server)
    summary = nested_sweep_flow(name, spec, sweep, args.nested, args.results, tensorboard)
    outer, metric = summary["outer"], summary["metric"]
    estimate = "none: a refit diverged" if outer["mean"] is None else \
        f"{outer['mean']:.4f} (95% interval [{outer['low']:.4f}, {outer['high']:.4f}])"
    print(f"{name}: tuned model's {metric}, nested over {args.nested} outer folds: {estimate}; the inner best "
          f"scores average {summary['inner_best_mean']:.4f} ({summary['configs_chosen']} different configs won) "
          f"-> {args.results / name / 'tune' / NESTED_FILE}")
    if outer["mean"] is None:
        folds = [str(fold["outer_fold"]) for fold in summary["folds"] if fold["outer_score"] is None]
        print(f"kerasflow: diverged: sweeps.{name}: the chosen config's training on outer fold(s) {', '.join(folds)}: "
              f"the loss became NaN or infinite; they have no outer score, so the tuned model has no estimate "
              f"(lower train.learning_rate, or scale the data with preprocess.scale)", file=sys.stderr)
        return DIVERGED
    return 0


def schedule(args: argparse.Namespace, experiments: list[str]) -> None:
    """Deploy `experiments` on the cron from prefect.yaml (or serve them, with --serve), against the configured
    Prefect server, else the local one, started with a worker for the deployment's pool if need be."""
    from prefect.settings import get_current_settings

    from kerasflow.flows import schedule as scheduling

    prefect_file = Path("prefect.yaml")
    if not args.serve:  # a bad one is refused before a server starts for it
        scheduling.read_prefect_file(prefect_file)
    local = None
    api_url = get_current_settings().api.url
    if not api_url:
        local = LocalServer.start()
        api_url = local.url
        local.use()
    if args.serve:
        if local is not None:  # the serving stops with the command, the server it needed does not
            print(f"serving from this command on kerasflow's local Prefect server, {local.url.removesuffix('/api')}, "
                  f"which keeps running after it (kerasflow server stop)", flush=True)
        scheduling.serve_schedule(experiments, args.cron, args.params, args.results, args.report)
        return
    name, pool = scheduling.deploy_schedule(prefect_file, experiments, args.cron, args.params, args.results,
                                            args.report, api_url)
    print(f"{scheduling.FLOW_NAME}/{name}: deployed on cron {args.cron!r} to work pool {pool!r} ({prefect_file})")
    if local is None:
        print(f"runs on {api_url}; a worker runs them: prefect worker start --pool {pool}")
    else:
        local.ensure_worker(pool)
        print(f"runs on kerasflow's local Prefect server, {local.url.removesuffix('/api')}, with its worker for "
              f"{pool!r}; both keep running (kerasflow server stop)")


def _server(args: argparse.Namespace) -> int:
    """`kerasflow server start|stop|status`: the local Prefect server and its workers."""
    if args.action == "start":
        print(LocalServer.start(args.port).url)
    elif args.action == "stop":
        local = LocalServer.recorded()
        if local is not None:
            local.stop()
        print("stopped" if local is not None else "no local server recorded")
    else:
        local = LocalServer.running()
        if local is None:
            print("not running")
            return 1
        print(local.url)
        for pool, pid in local.workers.items():
            print(f"worker for {pool!r}: " + (f"process {pid}" if local.ours(pid) else "not running"))
    return 0


def score_line(summary: dict) -> str:
    """An experiment's score as the run prints it: mean ± std over its folds, or a hold-out's one score."""
    if summary["n_folds"] == 1:
        return f"{summary['metric']} {summary['mean']:.4f} on the held-out rows"
    return f"{summary['metric']} {summary['mean']:.4f} ± {summary['std']:.4f} over {summary['n_folds']} folds"


def divergence(name: str, summary: dict) -> str:
    """One line saying which folds (and refit) of experiment `name` diverged, and at which epoch; "" if none."""
    parts = [f"fold {fold} at epoch {epoch}"
             for fold, epoch in zip(summary.get("diverged", []), summary.get("diverged_at_epoch", []))]
    if "refit_diverged_at_epoch" in summary:
        parts.append(f"the refit at epoch {summary['refit_diverged_at_epoch']} (no model saved)")
    if not parts:
        return ""
    return (f"{name}: the loss became NaN or infinite in {', '.join(parts)}; metrics.json records null scores "
            f"for them (lower train.learning_rate, or scale the data with preprocess.scale)")


WITHOUT_PARAMS: dict[str, Callable[[argparse.Namespace], int]] = {
    "data": _data, "predict": _predict, "generate": _generate, "server": _server}
"""The commands that read no params file, each with its function."""
WITH_PARAMS: dict[str, Callable[[argparse.Namespace, Params, TemporaryServer | None], int]] = {
    "list": _list, "compare": _compare, "report": _report, "tune": _tune, "schedule": _schedule, "run": _run}
"""The commands that read the params file, each with its function (given the temporary Prefect server started for
the flows, if any)."""


def console() -> NoReturn:
    """The console script: `main`, then exit without the interpreter's final garbage collections.

    Those walk every object TensorFlow and Prefect created, to free memory the OS takes back anyway, a noticeable
    part of a short command's wall time. Frozen, the objects are left as they are; exit handlers (logging's flush,
    Prefect's, Ray's shutdown) still run, and every output was written and closed before `main` returned.
    """
    status = main()
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    console()
