#!/usr/bin/env bash
# Creates tools/.venv with the pinned Python packages used to write golden files and run peer
# comparisons. Python is never needed to build, test or run ser itself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../.venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$here/requirements.txt"
echo "ready: $venv/bin/python"
