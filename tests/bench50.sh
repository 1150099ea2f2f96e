#!/usr/bin/env bash
# tests/bench50.sh: the issue #16 "fifty hosts" figures, as recorded in BENCHMARKS.md.
#
#   sudo -E tests/bench50.sh [OUT_DIR]      (root; minutes of the machine; OUT_DIR default /tmp/bench50)
#
# 1. builds the release binaries (cargo build --release -p mini -p mini-tests),
# 2. the 50-host lab through deploy/lab, up → 50 Ready → a global service → down → nothing left
#    (the ignored test tests/tests/lab50.rs),
# 3. cluster_bench on 50 hosts with 2,000 tasks (propagation, purge, idle gossip, RSS, bulk),
# 4. cluster_bench on 10 hosts, RUNS times (default 10), the propagation p99 of each.
# Every step prints `date` and the load average: the machine may be shared.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-/tmp/bench50}"
RUNS="${RUNS:-10}"
TASKS="${TASKS:-2000}"
[[ $(id -u) -eq 0 ]] || {
    echo "bench50: must run as root (namespaces)" >&2
    exit 1
}
command -v jq >/dev/null || {
    echo "bench50: jq is needed (apt-get install jq)" >&2
    exit 1
}
mkdir -p "$OUT"
stamp() { printf '==> %s  %s  load %s\n' "$*" "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }

cd "$REPO"
export CARGO_INCREMENTAL=0
stamp "release build"
cargo build --release -p mini -p mini-tests --bin mini --bin cluster_bench
# A copy, so that a rebuild during the runs cannot swap the binary.
cp target/release/mini "$OUT/mini"
cp target/release/cluster_bench "$OUT/cluster_bench"
export MINI_BIN="$OUT/mini"

stamp "50-host lab: up, service, down, nothing left"
cargo test --release -p mini-tests --test lab50 -- --ignored --nocapture 2>&1 | tee "$OUT/lab50.log"

stamp "cluster_bench, 50 hosts, $TASKS tasks"
"$OUT/cluster_bench" --hosts 50 --samples 40 --iperf-secs 0 --tasks "$TASKS" >"$OUT/hosts50.json"
jq -c '{propagation: .propagation.from_running_ms, purge: .purge.max_ms, idle: .idle.gossip_out_kbit_per_s,
    rss: .rss.manager_h1_mib, bulk: (.bulk | {all_running_s, tasks_per_s, manager_rss_mib, machine_cpu_pct})}' \
    "$OUT/hosts50.json"

for ((i = 1; i <= RUNS; i++)); do
    stamp "cluster_bench, 10 hosts, run $i of $RUNS"
    "$OUT/cluster_bench" --hosts 10 --samples 40 --iperf-secs 0 --purge-trials 1 >"$OUT/hosts10-$i.json"
    jq -c '{run: '"$i"', p50: .propagation.from_running_ms.p50, p99: .propagation.from_running_ms.p99,
        max: .propagation.from_running_ms.max, load: .loadavg_before}' "$OUT/hosts10-$i.json"
done
stamp "done: $OUT"
