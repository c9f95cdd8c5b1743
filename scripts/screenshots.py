#!/usr/bin/env python3
"""Remake docs/screenshots/*.png: runs the browser tests (tests/e2e) with screenshots switched on.

Usage: .venv/bin/python scripts/screenshots.py  (needs Debian's chromium: make system-deps)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    env = {**os.environ, "EVHUB_SCREENSHOTS": str(ROOT / "docs" / "screenshots")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e"]
    sys.exit(subprocess.run(command, cwd=ROOT, env=env, check=False).returncode)
