"""Reliability tests (issue 4): bad input, faults survived, determinism, security defaults.

Real processes and real signals throughout: the `kerasflow` console script, `os.kill`, `dvc repro`. A package
(this file) so that pytest imports these modules as `faults.<name>`, beside the root `tests/conftest.py`, whose
fixtures (`project`, `prefect_server`) they use, and `tests/helpers.py` (`run_cli`).
"""
