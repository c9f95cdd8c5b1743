#!/usr/bin/env bash
# Debian packages the test suite uses as real peers: PostgreSQL (recorder on a real server).
# Later issues add socat (serial pairs) and chromium (browser tests) here.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh postgresql
