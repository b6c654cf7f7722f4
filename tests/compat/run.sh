#!/usr/bin/env bash
# The compatibility suite: the official Python SDK and tccli against `fleetcrypt emulator`.
# Usage: tests/compat/run.sh [path/to/fleetcrypt]   (builds the release binary if not given)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/release/fleetcrypt}
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
venv=${FLEETCRYPT_COMPAT_VENV:-$here/.venv}
if [ ! -x "$venv/bin/tccli" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check tencentcloud-sdk-python tccli
fi
"$venv/bin/python" "$here/compat.py" "$bin"
