#!/usr/bin/env bash
# Debian packages the test suite uses as real peers: PostgreSQL (recorder on a real server).
# socat joins two pseudo-terminals: the serial "cable" for Modbus RTU and OpenEVSE tests.
# Chromium (browser tests) comes with the web issue.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh postgresql socat
