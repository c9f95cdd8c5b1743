#!/usr/bin/env bash
# Debian packages the test suite uses as real peers: PostgreSQL (recorder on a real server) and
# Chromium (browser tests, driven by Playwright; its own browser download cannot work offline).
# socat joins two pseudo-terminals: the serial "cable" for Modbus RTU and OpenEVSE tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh postgresql chromium socat
