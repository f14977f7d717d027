#!/usr/bin/env bash
# Install the GPU kit (`make gpu-kit`, benchmarks/gpu_kit.py) on an offline GPU machine:
#
#   bash install.sh VENV            # from inside the kit folder, or
#   bash KIT/install.sh VENV        # from anywhere; PYTHON picks the interpreter (default python3)
#
# Creates the venv VENV with --system-site-packages and, since that interpreter may itself live
# in a venv (whose packages --system-site-packages does not reach), a .pth file naming its
# site-packages: the machine's own torch, numpy, pandas and pyarrow stay visible. Then installs
# every wheel of the kit into VENV, offline and without resolving (the kit was resolved when it
# was built), and imports what the sweep needs. Run the sweep with VENV/bin/python.
set -euo pipefail

VENV=${1:?usage: install.sh VENV}
KIT=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

tar -xJf "$KIT/wheels.tar.xz" -C "$WORK"
"$PY" -m venv --system-site-packages "$VENV"
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PY" -c 'import site; print("\n".join(site.getsitepackages()))' >"$site/gpu_machine_packages.pth"
"$VENV/bin/python" -m pip install --quiet --no-index --no-deps --no-cache-dir "$WORK"/wheels/*.whl
"$VENV/bin/python" - <<'EOF'
import mlflow
import optuna
import ray
import ray.train.torch
import ray.tune
import sqlalchemy
import torch

print(f"installed: ray {ray.__version__}, optuna {optuna.__version__},",
      f"mlflow {mlflow.__version__}; torch {torch.__version__} from",
      torch.__file__.rsplit("/", 2)[0])
EOF
