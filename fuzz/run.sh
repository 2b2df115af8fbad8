#!/usr/bin/env bash
# Runs one fuzz target for a bounded time, niced, on its committed corpus.
#
#   fuzz/run.sh TARGET SECONDS [libFuzzer flags...]
#
# TARGET is one of: decode, session, server_bytes, replica, models (see fuzz/README.md). New inputs go to
# fuzz/corpus/TARGET (minimize before committing: `cargo +nightly fuzz cmin TARGET`), crashes
# to fuzz/artifacts/TARGET. Needs the nightly toolchain and `cargo install cargo-fuzz`.
# FUZZ_SANITIZER=address turns AddressSanitizer on (default: none; the crate has no
# unsafe code, and the target runs about twice as fast without it).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2
cd "$(dirname "$0")/.."
mkdir -p "fuzz/corpus/$target"
exec nice -n 10 cargo +nightly fuzz run --sanitizer "${FUZZ_SANITIZER:-none}" "$target" \
    "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -dict=fuzz/dict/protocol.dict -print_final_stats=1 "$@"
