#!/usr/bin/env bash
# bench/gpu.py on the GPU machine, which has JAX but no Keras, Ray, TensorFlow or Prefect, and no registry.
#
#   bash bench/gpu.sh prepare       # here, from the repository root: fills .whl/ (~50 MB, git ignores it) with
#                                   # requirements.lock's keras, pydantic, ruamel.yaml (flows/ray_driver.py's
#                                   # imports need it) and ray (its Java jar left out) for Python 3.12, and the
#                                   # two data files bench/gpu.py reads
#   bash bench/gpu.sh run [ARGS]    # there, from the repository root, .whl/ carried: installs them under
#                                   # /tmp/site, links kerasflow's code there and runs bench/gpu.py ARGS on
#                                   # Keras' JAX backend (194 s on an H200 with `--trials 4`)
#
# The device tool's call: command "set -o pipefail; bash bench/gpu.sh run --trials 4 2>&1 | tee $OUT/gpu.log",
# carry [".whl"], timeout 450 s.
set -euo pipefail
case "${1:-}" in
prepare)
    # What the GPU machine lacks for Keras 3 and Ray Tune, at the versions the project runs (../shared/gpu/).
    names="keras namex optree pydantic pydantic_core annotated-types typing-inspection jsonschema \
           jsonschema-specifications referencing rpds-py ruamel.yaml"
    rm -rf .whl && mkdir -p .whl
    tmp=$(mktemp -d)
    for name in $names ray; do
        pin=$(grep -i "^${name}==" requirements.lock) || { echo "requirements.lock pins no $name" >&2; exit 1; }
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
            --platform manylinux_2_28_x86_64 -d "$([ "$name" = ray ] && echo "$tmp" || echo .whl)" "$pin" \
            2>&1 | { grep -v "WARNING: Location" || true; }  # pip's own failure still stops the script
    done
    # Ray's wheel is 79 MB; without its jars it is 46 MB, under the 64 MiB a call may carry.
    python3 - "$tmp"/ray-*.whl .whl/ray-nojar.zip <<'EOF'
import sys, zipfile
source, kept = zipfile.ZipFile(sys.argv[1]), zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED)
for item in source.infolist():
    if not (item.filename.startswith("ray/jars/") or item.filename.endswith(".js.map")):
        kept.writestr(item, source.read(item.filename))
kept.close()
EOF
    rm -rf "$tmp"
    gzip -c data/mnist_5k.csv > .whl/mnist_5k.csv.gz
    cp data/breast_cancer.csv .whl/
    du -sh .whl
    ;;
run)
    shift
    root=$PWD
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
    python3 -c "import zipfile; zipfile.ZipFile('.whl/ray-nojar.zip').extractall('/tmp/site')"
    chmod +x /tmp/site/ray/core/src/ray/gcs/gcs_server /tmp/site/ray/core/src/ray/raylet/raylet
    # kerasflow itself, as pyproject.toml installs it: tasks/ and flows/ as kerasflow.tasks and kerasflow.flows.
    mkdir -p /tmp/site/kerasflow
    ln -sfn "$root/tasks" /tmp/site/kerasflow/tasks
    ln -sfn "$root/flows" /tmp/site/kerasflow/flows
    # Ray's workers are started by the raylet this process starts, and inherit these.
    export PYTHONPATH=/tmp/site KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
    mkdir -p data
    gunzip -c .whl/mnist_5k.csv.gz > data/mnist_5k.csv
    cp .whl/breast_cancer.csv data/
    nvidia-smi -L || true
    python3 bench/gpu.py "$@"
    ;;
*)
    echo "usage: bash bench/gpu.sh prepare | run [bench/gpu.py's arguments]" >&2
    exit 2
    ;;
esac
