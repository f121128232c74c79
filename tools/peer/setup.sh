#!/usr/bin/env bash
# Creates tools/.venv-peer with TensorFlow (CPU) for the Keras side-by-side benchmark. Kept apart
# from tools/.venv so golden files never depend on TensorFlow's numpy pins.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../.venv-peer"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$here/requirements.txt"
echo "ready: $venv/bin/python"
