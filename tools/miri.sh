#!/usr/bin/env bash
# Runs Graft's slice-level CPU kernels (depthwise convolution, batch norm) under Miri, which
# checks every unchecked read and write of their portable paths for undefined behaviour.
# Needs the nightly toolchain with the miri and rust-src components:
#   rustup component add --toolchain nightly miri rust-src
# The same tests also run normally: (cd tools/miri && cargo test --release).
set -euo pipefail
cd "$(dirname "$0")/miri"
# Rayon's threads under Miri are slow but checked too; isolation off for its thread count,
# leaks ignored because its global pool outlives the tests.
# Tree Borrows: crossbeam-epoch (under rayon) breaks Stacked Borrows' stricter rules in its
# intrusive list (its upstream issue), which would stop the run before it reaches Graft's code.
MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation -Zmiri-tree-borrows -Zmiri-ignore-leaks}" cargo +nightly miri test "$@"
