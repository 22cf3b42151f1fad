#!/bin/sh
# Node-agent benchmark: skiff's agent vs bare runc (startup), density, and
# image pull vs skopeo, side by side. See bench/README-agent-scheduler.md.
#   bench/agent.sh [--quick] [--phases startup,density,pull] [options...]   (root, after `make build`)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if [ ! -x "$root/build/skiff" ]; then
    echo "bench/agent.sh: build/skiff missing; run 'make build' first" >&2
    exit 2
fi
PY=${BENCH_PYTHON:-/usr/bin/python3}
exec "$PY" "$here/agent.py" "$@"
