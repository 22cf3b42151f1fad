#!/bin/sh
# Registry benchmark: skiff's /v2/ vs Debian's docker-registry, side by side,
# driven by skopeo. See bench/registry.py (--help) for what it measures.
#   bench/registry.sh [--quick] [--size-mb N] [--skiff BIN]   (after `make build`)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PY=${BENCH_PYTHON:-/usr/bin/python3}
exec "$PY" "$here/registry.py" "$@"
