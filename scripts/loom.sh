#!/usr/bin/env bash
# Model-checks the lane record protocol (schemas/src/slot.rs) with loom: every interleaving of a
# writer and a reader, within a preemption bound, on a few-slot lane. See schemas/tests/loom.rs.
#
# Builds into target/loom so the `--cfg loom` RUSTFLAGS do not invalidate the normal build cache.
# Extra arguments go to the test harness, e.g. `scripts/loom.sh wraparound`.
# LOOM_MAX_PREEMPTIONS (default 4) bounds thread switches per execution; raise it for a deeper,
# slower search. LOOM_LOG=trace and LOOM_LOCATION=1 explain a failing interleaving.
set -euo pipefail

cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-4}"

exec cargo test -p flightrec-schemas --test loom --release -- --nocapture "$@"
