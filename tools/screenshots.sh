#!/usr/bin/env bash
# Runs the designer under Xvfb through the whole loop (network, data, training, results) and
# writes screenshots/{graph,data,training,results}.png. Needs Debian's xvfb and
# mesa-vulkan-drivers (software Vulkan for the wgpu renderer).
#   cargo build --release && tools/screenshots.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="${1:-$root/screenshots}"
mkdir -p "$out"
export XDG_CONFIG_HOME="$(mktemp -d)"   # a fresh start: no remembered project
xvfb-run -a -s "-screen 0 1440x900x24" "$root/target/release/graft" --fresh --screenshots "$out"
ls -la "$out"
