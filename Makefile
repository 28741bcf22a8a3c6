# The two set-up commands: `make run` (install + the default pipeline) and `make test` (install + tests).
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-stamp
# The pipeline's stages call `kerasflow` and `dvc` from the virtual environment.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: run test install clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[test]"
	touch $@

# Every experiment in params.yaml (the five defaults take about 6 minutes on 2 cores), then the summary.
run: $(STAMP)
	kerasflow data
	@# A fresh clone has no DVC cache: commit the regenerated CSVs into it, refusing if their hash differs.
	@saved=$$(mktemp) && cp data.dvc $$saved && dvc commit --force --quiet data.dvc && \
	  if cmp -s data.dvc $$saved; then rm $$saved; else mv $$saved data.dvc; \
	  echo "error: data/ as written differs from data.dvc (see dvc status data.dvc)" >&2; exit 1; fi
	dvc repro
	@echo; cat reports/summary.md; echo
	@echo "results: results/<experiment>/ (metrics.json, history/, model/)   report: reports/summary.md"

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) results .dvc/tmp
