#!/usr/bin/env bash
# What CubeCL's `persistence` feature (autotune results kept between runs) would add to a cold
# build (docs/BENCHMARKS.md, GPU; the decision in Cargo.toml): a scratch crate depending on
# cubecl-environment alone, built cold without the feature, then again with it (which brings
# the turso SQL engine): the second build's time is what the feature adds. Prints each build's
# wall and user CPU seconds. Offline: the crates must
# already be in cargo's registry (a build of Graft fetches all but turso's).
#   tools/persistence_cost.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/target/persistence_cost"
rm -rf "$work" && mkdir -p "$work/src"
cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "persistence_cost"
version = "0.1.0"
edition = "2024"
[dependencies]
cubecl-environment = { version = "=0.11.3", default-features = false, features = ["std"] }
[features]
persistence = ["cubecl-environment/persistence"]
[profile.release]
debug = false
[workspace]
TOML
echo 'fn main() {}' > "$work/src/main.rs"
cd "$work"
export CARGO_TARGET_DIR="$work/target"
/usr/bin/time -f 'without persistence: %e s wall, %U s user' cargo build --release --offline -q
/usr/bin/time -f 'then with persistence: %e s wall, %U s user (what the feature adds, cubecl-environment rebuilt included)' \
  cargo build --release --offline -q --features persistence
