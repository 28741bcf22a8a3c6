# The two set-up commands: `make run` (install + the default pipeline) and `make test` (install + tests).
# Both install the optional MLflow and TensorBoard extras too: the tests run a real MLflow server and TensorBoard.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-stamp
# The pipeline's stages call `kerasflow` and `dvc` from the virtual environment.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: run test install clean

install: $(STAMP)

# uv (pinned in requirements.lock, brought by the venv's own pip) installs the environment: it fetches and unpacks
# the wheels in parallel and compiles the bytecode on every core, where pip does each in turn on one
# (BENCHMARKS.md, "`make install`"). The bytecode is compiled here, once: where PYTHONDONTWRITEBYTECODE is set,
# nothing would write it later, and every process would compile TensorFlow's modules again.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -c requirements.lock -e ".[test,mlflow,tensorboard]"
	touch $@

# The quick default: every experiment's `evaluate` stage (and each continued one's `continue`), then the report.
# `make run FULL=1`: every stage of dvc.yaml, the Ray Tune sweeps included.
REPRO := $(if $(FULL),dvc repro,dvc repro evaluate continue && dvc repro --single-item report)

run: $(STAMP)
	kerasflow data
	@# A fresh clone has no DVC cache: commit the regenerated CSVs into it, refusing if their hash differs.
	@saved=$$(mktemp) && cp data.dvc $$saved && dvc commit --force --quiet data.dvc && \
	  if cmp -s data.dvc $$saved; then rm $$saved; else mv $$saved data.dvc; \
	  echo "error: data/ as written differs from data.dvc (see dvc status data.dvc)" >&2; exit 1; fi
	$(REPRO)
	@echo; cat reports/summary.md; echo
	@echo "results: results/<experiment>/ (metrics.json, history/, predictions.csv, model/)"
	@echo "report:  reports/summary.md, reports/report.html"

# The report's test opens the HTML in Debian's headless Chromium: installed here where apt can (as root, in CI).
# Three pytest-xdist workers, a test file each at a time (its module fixtures set up once): a third of the
# suite's time on two workers left the two cores idle (servers starting, the cron's next minute, subprocesses),
# which a third worker fills (BENCHMARKS.md, "`make test`'s suite"). Files go out in the order collected, the
# longest first (tests/conftest.py), not pytest-xdist's most-tests-first.
test: $(STAMP)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium not found and not installable here: the report's browser test will be skipped" >&2
	$(BIN)/python -m pytest -q --durations=15 -n 3 --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) results .dvc/tmp
