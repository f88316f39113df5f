#!/usr/bin/env bash
# Time `cryorefine demo` on an idle machine, then beside HOGS busy loops (load about HOGS + 1), as
# recorded in the README and docs/benchmarks.md. Usage: tools/demo_timing.sh OUT [HOGS] [demo options]
set -euo pipefail
OUT=${1:?usage: tools/demo_timing.sh OUT [HOGS] [demo options]}
HOGS=${2:-4}
shift $(( $# >= 2 ? 2 : 1 ))
CRYOREFINE=${CRYOREFINE:-cryorefine}
mkdir -p "$OUT"

run() {
    local name=$1 start
    start=$(date +%s)
    "$CRYOREFINE" demo --out "$OUT/$name" "${@:2}" > "$OUT/$name.log" 2>&1
    echo "$name: $(( $(date +%s) - start )) s, load at the end $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/times.txt"
}

# Idle means idle: wait for the load average of earlier work to decay first.
while awk '{exit !($1 > 0.3)}' /proc/loadavg; do sleep 10; done
run idle "$@"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
for _ in $(seq "$HOGS"); do (while :; do :; done) & done
sleep 60  # let the 1-minute load average rise before the demo chooses its threads
(while :; do cut -d' ' -f1 /proc/loadavg >> "$OUT/load.txt"; sleep 15; done) &
run loaded "$@"
