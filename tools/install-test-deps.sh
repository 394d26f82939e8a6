#!/usr/bin/env bash
# Installs the Debian packages Graft's tests need, if they are missing:
#   libonnx-testdata     the ONNX project's node conformance tests (tests/suite/onnx_conformance.rs)
#   mesa-vulkan-drivers  a software Vulkan adapter for the wgpu smoke test (tests/suite/wgpu_smoke.rs)
#   libasound2           ALSA's runtime library: playback tests play to its null device (src/audio/playback.rs)
set -euo pipefail
need=()
[ -d /usr/share/libonnx-testdata/data/node ] || need+=(libonnx-testdata)
dpkg-query -W -f='${Status}' mesa-vulkan-drivers 2>/dev/null | grep -q "ok installed" || need+=(mesa-vulkan-drivers)
compgen -G "/usr/lib/*-linux-gnu/libasound.so.2" >/dev/null || need+=(libasound2)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
