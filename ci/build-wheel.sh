#!/usr/bin/env bash
# Builds a binary wheel of rs3gw (with its compiled core) into dist/. Needs `make deps` system packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
make --no-print-directory apt
python3 -m pip wheel --no-deps --wheel-dir dist .
