#!/bin/sh
# Commit throughput and commit-to-delivery latency of each storage mode, side by side in
# one invocation: memory, disk/never, disk/interval, disk/always; 1 writer at 1,000
# updates/s and 10 writers at 5,000 updates/s (1,000 clients in one room), then 10 writers
# flat out (closed loop, 64 in flight each: commit throughput). Each run is
# `deltasync bench` with its in-process server configured by --server-set; one JSON line
# per run goes to stdout (the bench's own --json object, with the mode added).
#
#   benches/storage-modes.sh [DURATION_SECS] > storage-modes.jsonl
set -eu
bin=${DELTASYNC_BIN:-target/release/deltasync}
secs=${1:-5}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
run() { # mode sync writers rate
    mode=$1 sync=$2 writers=$3 rate=$4
    dir="$data/$mode-$sync-$writers-$rate"
    if [ "$mode" = memory ]; then
        set -- --server-set storage.backend=memory
    else
        set -- --server-set storage.backend=disk --server-set "storage.dir=$dir" \
            --server-set "storage.sync=$sync"
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    json=$("$bin" bench --clients 1000 --writers "$writers" --rate "$rate" \
        --duration "$secs" --warmup 2 --json --quiet "$@" || true)
    bytes=$(du -sb "$dir" 2>/dev/null | cut -f1 || echo 0)
    printf '{"mode":"%s","sync":"%s","writers":%s,"rate":"%s","load":%s,"disk_bytes":%s,"bench":%s}\n' \
        "$mode" "$sync" "$writers" "$rate" "$load" "${bytes:-0}" "$json"
}
for shape in "1 1000" "10 5000" "10 unlimited"; do
    set -- $shape
    writers=$1 rate=$2
    run memory - "$writers" "$rate"
    for sync in never interval always; do
        run disk "$sync" "$writers" "$rate"
    done
done
