#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make deps`, only when missing: nginx-light (the static-file
# baseline), moto[server] (the Python S3 baseline) and matplotlib (the figure) into .venv.
# Usage: ci/bench-setup.sh [venv-python]   (default .venv/bin/python)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${1:-$root/.venv/bin/python}"
sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
	echo "installing: nginx-light"
	$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -q
	$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx-light
fi

missing=()
"$py" -c "import moto.server, flask, flask_cors" >/dev/null 2>&1 || missing+=("moto[server]")
"$py" -c "import matplotlib" >/dev/null 2>&1 || missing+=("matplotlib")
if [ "${#missing[@]}" -gt 0 ]; then
	echo "installing into $(dirname "$py"):" "${missing[@]}"
	"$py" -m pip install --quiet "${missing[@]}"
fi
