#!/usr/bin/env bash
# The scale measurements (`benches/benches/scale.rs`), each quoted against a raw-turmoil
# baseline of the same traffic shape measured in the same command:
#
#   scripts/scale.sh                          # compare: raw vs harness c2s vs hybrid, 3,000 users
#   scripts/scale.sh compare 5000 'keepalive: { kind: whitespace }'   # plus a lever as a variant
#   scripts/scale.sh table 5000,15000,30000   # wall per simulated minute and peak RSS by size
#   scripts/scale.sh cluster 5000,15000,30000 # the same on cluster-75k's six-node shape
#
# Release build; the first run compiles for a few minutes. MIMALLOC=1 in the environment builds
# with mimalloc as the allocator (`sim`'s `mimalloc` feature: faster, about a fifth more memory).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
exec cargo bench -p benches --bench scale ${MIMALLOC:+--features sim/mimalloc} -- "$@"
