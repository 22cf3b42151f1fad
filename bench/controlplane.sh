#!/bin/sh
# Control-plane benchmark: skiff vs moto, side by side. See bench/README.md.
#   bench/controlplane.sh [--quick] [options...]   (after `make build`)
# Signing needs botocore from Debian's /usr/bin/python3; moto runs under the
# python3 first on PATH (pyenv) unless --moto-python is given.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if [ ! -x "$root/build/skiff" ]; then
    echo "bench/controlplane.sh: build/skiff missing; run 'make build' first" >&2
    exit 2
fi
PY=${BENCH_PYTHON:-/usr/bin/python3}
exec "$PY" "$here/controlplane.py" "$@"
