#!/usr/bin/env bash
# Installs XLA's CPU PJRT plugin where btconvert (GoMLX's XLA backend) finds it as "xla:cpu" and
# where --backend auto picks it: $DEST/pjrt_c_api_cpu_plugin.so.
#
#   scripts/install-xla-cpu.sh            # into ~/.local/lib/go-xla
#   DEST=/usr/local/lib/go-xla scripts/install-xla-cpu.sh
#
# The plugin is XLA's own //xla/pjrt/c:pjrt_c_api_cpu_plugin.so (PJRT C API 0.115, the XLA of
# jaxlib 0.11.2), as packaged on PyPI by lammps-jax-pjrt-cpu 0.11.2. Only PyPI is contacted; the
# wheel and the library are checked against the sha256 pinned here before anything is installed.
# Needs python3 with pip, sha256sum, glibc >= 2.27 and libstdc++ (GLIBCXX_3.4.22) on x86-64 Linux.
# Running it again is a no-op once the right file is in place.
set -euo pipefail

PACKAGE=lammps-jax-pjrt-cpu
VERSION=0.11.2
WHEEL=lammps_jax_pjrt_cpu-0.11.2-py3-none-manylinux_2_27_x86_64.whl
WHEEL_SHA256=1319390d948b39f69f7dade496b7c385149d9ca6097a6b62114da113216d9ad1
SO_IN_WHEEL=lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so
SO_SHA256=ad1309ac822b1b24d51b7f9947c7c9fa9ef5d67f390584cbc3d1fa2428fed9c2

DEST=${DEST:-$HOME/.local/lib/go-xla}
target=$DEST/pjrt_c_api_cpu_plugin.so

# Everything this script creates is removed on the way out, interrupted or not: the download
# folder and the copy beside the target. Long steps run in the background and are waited for, as
# bash runs a trap only once its foreground command ends; the trap stops them before cleaning up.
tmp='' part='' child=''
cleanup() {
  if [[ -n $child ]]; then
    kill "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  if [[ -n $part ]]; then rm -f -- "$part" || true; fi
  if [[ -n $tmp ]]; then rm -rf -- "$tmp" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
# step runs a command so that a signal interrupts it at once.
step() {
  "$@" &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=''
  return "$rc"
}

if [[ $(uname -s)/$(uname -m) != Linux/x86_64 ]]; then
  echo "install-xla-cpu: this plugin is for x86-64 Linux; here is $(uname -s)/$(uname -m)" >&2
  exit 1
fi
# A folder (or a pipe, a device, a dangling link) in the plugin's place would never be replaced:
# say so before downloading 63 MB.
if [[ -e $target || -L $target ]] && [[ ! -f $target ]]; then
  echo "install-xla-cpu: $target is not a regular file; remove it, or set DEST to another folder" >&2
  exit 1
fi
if [[ -f $target ]] && echo "$SO_SHA256  $target" | sha256sum -c --status; then
  echo "already installed: $target"
  exit 0
fi
tmp=$(mktemp -d)
# pip's own temporary files go inside $tmp as well.
export TMPDIR=$tmp
# --no-deps: the wheel declares jax as a dependency, which the plugin does not use.
echo "$PACKAGE==$VERSION --hash=sha256:$WHEEL_SHA256" >"$tmp/requirements.txt"
echo "install-xla-cpu: downloading $PACKAGE $VERSION (63 MB) from PyPI"
step python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes --only-binary=:all: \
  --platform manylinux_2_27_x86_64 -r "$tmp/requirements.txt" -d "$tmp"
echo "$WHEEL_SHA256  $tmp/$WHEEL" | sha256sum -c --status || { echo "install-xla-cpu: $WHEEL: sha256 mismatch" >&2; exit 1; }
step python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$tmp/$WHEEL" "$SO_IN_WHEEL" "$tmp/x"
echo "$SO_SHA256  $tmp/x/$SO_IN_WHEEL" | sha256sum -c --status || { echo "install-xla-cpu: $SO_IN_WHEEL: sha256 mismatch" >&2; exit 1; }
mkdir -p -- "$DEST"
# Write beside the target, then rename: a run that is interrupted leaves no half-written plugin.
# -T: should a folder have taken either name meanwhile, fail rather than write into it.
part=$target.tmp.$$
step install -T -m 0755 "$tmp/x/$SO_IN_WHEEL" "$part"
echo "$SO_SHA256  $part" | sha256sum -c --status || { echo "install-xla-cpu: $part: sha256 mismatch after copying" >&2; exit 1; }
mv -fT -- "$part" "$target"
part=''
echo "installed $target (PJRT CPU plugin, $PACKAGE $VERSION)"
