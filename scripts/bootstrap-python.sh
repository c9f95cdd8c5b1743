#!/usr/bin/env bash
# Creates the project's virtual environment; on Debian, installs python3-venv first when the
# interpreter was built without ensurepip (a fresh Debian image ships python3 without it).
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    scripts/apt-install.sh python3-venv
fi
"$python" -c 'import sys; assert sys.version_info >= (3, 11), "evhub needs Python >= 3.11"'
"$python" -m venv "$venv"
