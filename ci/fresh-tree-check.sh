#!/usr/bin/env bash
# Copies the work tree (without .venv, data/ and build products) to a scratch directory and runs a
# make target there, proving the Makefile sets everything up from nothing. Usage: ci/fresh-tree-check.sh [target]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-test-fast}"
scratch="$(mktemp -d /tmp/rs3gw-fresh.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
tar -C "$root" \
	--exclude=./.venv --exclude=./data --exclude=./build --exclude='*.so' --exclude='*.egg-info' \
	--exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis --exclude=.mypy_cache \
	--exclude=.ruff_cache -cf - . | tar -C "$scratch" -xf -
make -C "$scratch" "$target"
