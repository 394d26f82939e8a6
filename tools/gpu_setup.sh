# Sourced by tools/gpu_check.sh and tools/gpu_profile.sh on a lent GPU machine: sets `work`
# (a scratch folder) and `bin` (the graft binary unpacked there), and makes Vulkan reachable.
work=$(mktemp -d)
bin="$work/graft"
if [ -f target/gpu/graft.xz ]; then
  xz -dc target/gpu/graft.xz > "$bin"
elif [ -x target/release/graft ]; then
  cp target/release/graft "$bin"
else
  echo "no graft binary: run tools/gpu_check.sh --build first" >&2
  exit 1
fi
chmod +x "$bin"
# The device image may lack the Vulkan loader wgpu opens (libvulkan.so.1): the lent-machine
# notes bring Debian's loader packages in .gl/ (carried) to unpack there, and name NVIDIA's
# driver files when none is found.
if ! ldconfig -p | grep -q libvulkan.so.1 && [ -d .gl ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then
  export VK_DRIVER_FILES="$icd"
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
