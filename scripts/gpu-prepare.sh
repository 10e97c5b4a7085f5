#!/usr/bin/env bash
# Runs HERE (a Debian machine with apt), before scripts/gpu-check.sh runs on a
# CUDA machine that has PyTorch but no internet and no apt. Downloads the
# .deb files of knowtrace's build dependencies (the -dev packages and the
# runtime libraries they link to), pkg-config and ninja into one folder, and
# copies known_1000.json beside them, with Llama 3's own tokenizer as a
# gzipped tokenizer.json (bench/llama3_tokenizer.py: from the llama-models
# wheel on PyPI; needs a PYTHON with transformers, tokenizers and tiktoken,
# else the GPU runs fall back to the tiny fixture tokenizer). gpu-check.sh
# unpacks (dpkg -x) only the packages that machine lacks into a private
# prefix; nothing is installed there.
#
#   bash scripts/gpu-prepare.sh [DIR]          (default .gpu-debs, ~7 MB)
#
# then carry DIR with the working tree, e.g. with the device tool:
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu-debs"])
#
# cairo (plots) is left out on purpose: knowtrace builds without it.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-.gpu-debs}"

# -dev packages whose runtime libraries must travel too (their lib* Depends).
DEV=(libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libutf8proc-dev zlib1g-dev libgtest-dev)
TOOLS=(pkgconf pkgconf-bin libpkgconf3 ninja-build)

command -v apt-get >/dev/null || { echo "gpu-prepare: needs apt-get (a Debian/Ubuntu machine)" >&2; exit 1; }
if ! apt-cache show libyaml-cpp-dev >/dev/null 2>&1; then
  echo "gpu-prepare: apt-get update" >&2
  apt-get update -qq
fi
pkgs=("${DEV[@]}" "${TOOLS[@]}")
for p in "${DEV[@]}"; do
  # direct library dependencies, e.g. libyaml-cpp-dev -> libyaml-cpp0.7
  while read -r dep; do
    case "$dep" in libc6*|libstdc++*|libgcc*|"<"*) ;; lib*|zlib1g) pkgs+=("$dep");; esac
  done < <(apt-cache depends --no-recommends --no-suggests "$p" | awk '/^ *(Pre)?Depends:/ {print $2}')
done
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)

rm -f "$DIR"/*.deb
mkdir -p "$DIR"
( cd "$DIR" && apt-get download "${pkgs[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" ) >&2
printf '%s\n' "${pkgs[@]}" > "$DIR/PACKAGES"
. /etc/os-release && echo "$PRETTY_NAME" > "$DIR/SOURCE"

data="${KNOWTRACE_DATA_DIR:-}"
[ -z "$data" ] && [ -f ../shared/data/known_1000.json ] && data=../shared/data
if [ -n "$data" ] && [ -f "$data/known_1000.json" ]; then
  cp "$data/known_1000.json" "$DIR/"
else
  echo "gpu-prepare: known_1000.json not found (set KNOWTRACE_DATA_DIR): gpu-check.sh will use its 4 built-in facts" >&2
fi

# Llama 3's tokenizer: the GPU runs' prompts get the lengths Llama 3 gives them.
PY="${PYTHON:-python3}"
if "$PY" bench/llama3_tokenizer.py --out "$DIR/llama3-tokenizer" ${data:+--data "$data/known_1000.json"} \
    >"$DIR/llama3-tokenizer.json" 2>"$DIR/llama3-tokenizer.err"; then
  gzip -9 -f "$DIR/llama3-tokenizer/tokenizer.json"  # 17 MB -> 2.5 MB of the 64 MiB that travels
  echo "gpu-prepare: Llama 3 tokenizer in $DIR/llama3-tokenizer ($("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d prompts equal to tiktoken, %.2f tokens each on average" % (d["equal_to_tiktoken"], d["mean_tokens_with_bos"]))' "$DIR/llama3-tokenizer.json"))" >&2
else
  rm -rf "$DIR/llama3-tokenizer"
  echo "gpu-prepare: no Llama 3 tokenizer ($(tail -1 "$DIR/llama3-tokenizer.err")): the GPU runs use the fixture BPE" >&2
fi

# Keep the folder out of git without touching .gitignore.
case "$(cd "$DIR" && pwd)/" in
  "$(pwd)"/*)
    if git rev-parse --git-dir >/dev/null 2>&1 && ! git check-ignore -q "$DIR"; then
      excl="$(git rev-parse --git-path info/exclude)"
      mkdir -p "$(dirname "$excl")"
      echo "/${DIR#./}/" >> "$excl"
      echo "gpu-prepare: added /${DIR#./}/ to $excl" >&2
    fi;;
esac
echo "gpu-prepare: $(ls "$DIR"/*.deb | wc -l) packages, $(du -sh "$DIR" | cut -f1) in $DIR: ${pkgs[*]}" >&2
