#!/bin/sh
# Scheduler benchmark: placements/s with 1,000 and 5,000 simulated instances
# (binpack, spread, memberOf) and a 1,000-task service rollout.
# See bench/README-agent-scheduler.md.
#   bench/scheduler.sh [--quick] [--perf] [options...]   (after `make build`)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if [ ! -x "$root/build/skiff" ]; then
    echo "bench/scheduler.sh: build/skiff missing; run 'make build' first" >&2
    exit 2
fi
PY=${BENCH_PYTHON:-/usr/bin/python3}
exec "$PY" "$here/scheduler.py" "$@"
