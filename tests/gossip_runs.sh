#!/usr/bin/env bash
# tests/gossip_runs.sh: the issue #16 gossip figures — endpoint propagation at 10 hosts, RUNS
# runs in a row, then one 50-host run with node deaths and an idle soak.
#
#   sudo -E tests/gossip_runs.sh [OUT_DIR]        (root; OUT_DIR default /tmp/gossip-runs)
#
# Environment:
#   MINI_BIN, CLUSTER_BENCH  binaries to use (default: a release build of this tree, copied to
#                            OUT_DIR so that a rebuild during the runs cannot swap them)
#   RUNS=10                  10-host runs (cluster_bench --hosts 10 --samples 40 --endpoints 20)
#   HOSTS50=1                0: skip the 50-host run
#   SOAK_SECS=600            the 50-host idle soak (no live node may be declared down)
#   KILLS=5                  node deaths at 50 hosts (each: every survivor purged, timed)
#
# A 10-host run is clean when every sample's endpoint is on every other node within 500 ms of
# the owner's RUNNING stamp and no sample failed. Every step prints `date` and the load
# average: the machine may be shared. JSON per run in OUT_DIR; a summary line per run on stderr.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-/tmp/gossip-runs}"
RUNS="${RUNS:-10}"
HOSTS50="${HOSTS50:-1}"
SOAK_SECS="${SOAK_SECS:-600}"
KILLS="${KILLS:-5}"
[[ $(id -u) -eq 0 ]] || {
    echo "gossip_runs: must run as root (namespaces)" >&2
    exit 1
}
command -v jq >/dev/null || {
    echo "gossip_runs: jq is needed (apt-get install jq)" >&2
    exit 1
}
mkdir -p "$OUT"
stamp() { printf '==> %s  %s  load %s\n' "$*" "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }

if [[ -z "${MINI_BIN:-}" || -z "${CLUSTER_BENCH:-}" ]]; then
    stamp "release build"
    (cd "$REPO" && CARGO_INCREMENTAL=0 cargo build --release -p mini -p mini-tests --bin mini --bin cluster_bench)
    cp "$REPO/target/release/mini" "$OUT/mini"
    cp "$REPO/target/release/cluster_bench" "$OUT/cluster_bench"
    export MINI_BIN="$OUT/mini"
    CLUSTER_BENCH="$OUT/cluster_bench"
fi
export MINI_BIN

clean=0
in_a_row=0
best_row=0
for ((i = 1; i <= RUNS; i++)); do
    stamp "cluster_bench, 10 hosts, run $i of $RUNS"
    json="$OUT/hosts10-$i.json"
    if ! "$CLUSTER_BENCH" --hosts 10 --samples 40 --iperf-secs 0 --idle-secs 3 --purge-trials 1 \
        --endpoints 20 >"$json" 2>"$OUT/hosts10-$i.log"; then
        echo "run $i: cluster_bench failed, see $OUT/hosts10-$i.log" >&2
        in_a_row=0
        continue
    fi
    jq -c '{run: '"$i"', n: .propagation.from_running_ms.n, p50: .propagation.from_running_ms.p50,
        p99: .propagation.from_running_ms.p99, max: .propagation.from_running_ms.max,
        errors: (.propagation.errors | length), purge_ms: .purge.max_ms, load: .loadavg_before}' "$json" >&2
    if jq -e '.propagation.from_running_ms.max <= 500 and (.propagation.errors | length) == 0
        and .propagation.from_running_ms.n == 40' "$json" >/dev/null; then
        clean=$((clean + 1))
        in_a_row=$((in_a_row + 1))
    else
        in_a_row=0
    fi
    ((in_a_row > best_row)) && best_row=$in_a_row
done
stamp "10 hosts: $clean of $RUNS runs clean (max ≤ 500 ms, no failed sample), $best_row in a row"

if [[ "$HOSTS50" == 1 ]]; then
    stamp "cluster_bench, 50 hosts, $KILLS kills, ${SOAK_SECS}s idle soak"
    json="$OUT/hosts50.json"
    "$CLUSTER_BENCH" --hosts 50 --samples 40 --iperf-secs 0 --purge-trials "$KILLS" \
        --soak-secs "$SOAK_SECS" >"$json" 2>"$OUT/hosts50.log"
    jq -c '{propagation: .propagation.from_running_ms, errors: (.propagation.errors | length),
        purge: .purge.summary_ms, purge_failed: .purge.failed, idle_gossip: .idle.gossip_out_kbit_per_s,
        soak: (.soak | {secs, heartbeat_failures, gossip_member_down, declared_down_itself,
        not_ready: (.checks_with_a_node_not_ready | length)}), load: .loadavg_before}' "$json" >&2
fi
stamp "done: $OUT"
