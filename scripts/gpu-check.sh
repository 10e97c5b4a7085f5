#!/usr/bin/env bash
# One script for a CUDA machine that has PyTorch (pip) but no internet and no
# apt: build knowtrace against that PyTorch's libtorch, run the equivalence
# tests on the GPU, make random-weight models with the exact shapes of
# Llama-3.2-3B and Llama-3.1-8B, and time knowtrace's fast engine against
# ROME's algorithm on transformers (bench/rome_baseline.py) on the same GPU in
# bfloat16. Writes a markdown table to $OUT/gpu-results.md (and stdout), the
# whole log to $OUT/gpu-check.log and every run's JSON to
# $OUT/gpu-results.json. Finishes in under 8 minutes on an H100: each step
# prints its elapsed time, gets a timeout from what is left of the budget,
# and a failed step is reported and the next one still runs.
#
#   here:   bash scripts/gpu-prepare.sh            # .gpu-debs/: build deps as .deb + known_1000.json
#   there:  bash scripts/gpu-check.sh              # (device tool: carry [".gpu-debs"])
#
# Build dependencies: the script first asks CMake which of yaml-cpp,
# nlohmann_json, CLI11, ZLIB, GTest, pkg-config, libpcre2-8 and libutf8proc
# the machine lacks, unpacks (dpkg -x, or ar+tar) only those from .gpu-debs/
# into a private prefix ($KT_GPU_WORK/deps), rewrites their .pc files and
# absolute symlinks to point there, and hands the prefix to CMake and
# pkg-config. cairo is never carried: knowtrace then builds without plots.
#
# Settings (environment):
#   OUT                  where results go (default /tmp/kt-gpu-out)
#   KT_GPU_BUDGET_S      wall-clock budget of the whole script (450)
#   KT_GPU_DEBS          folder of .deb files (.gpu-debs)
#   KT_GPU_WORK          scratch folder (/tmp/kt-gpu)
#   KT_GPU_BUILD_DIR     build folder (build-gpu)
#   KT_GPU_JOBS          build parallelism (16)
#   KT_GPU_MODELS        llama-3.2-3b,llama-3.1-8b
#   KT_GPU_MODEL_SHAPES  real | tiny (tiny: 2-layer models, to test the script)
#   KT_GPU_FACTS         facts for knowtrace fast (3)
#   KT_GPU_PY_FACTS      facts for the Python baseline (1)
#   KT_GPU_REFERENCE_FACTS  facts for knowtrace's reference engine too (0)
#   KT_GPU_SAMPLES, KT_GPU_WINDOW, KT_GPU_NOISE   (10, 10, 0.1)
#   KT_GPU_DEVICE        cuda (cpu only to test the script without a GPU)
#   KT_GPU_DTYPE         bfloat16
#   KT_GPU_SKIP          comma list of steps to skip: build (configure too), compile (build only),
#                        tests, models, bench
#   KT_GPU_TESTS         engines (test_fast_engine, test_trace, test_interventions on the GPU) or
#                        all (every target and every ctest entry; ~2x the time: run it as its own
#                        call with KT_GPU_SKIP=models,bench, then the bench with KT_GPU_SKIP=tests,
#                        the build folder kept)
#   KT_GPU_TORCH_PREFIX  CMake prefix of libtorch (default: from python3's torch)
#   KT_GPU_FORCE_DEBS=1  unpack every carried dependency, even those found
#   KNOWTRACE_BIN        use this binary instead of building (with KT_GPU_SKIP=build)
#   PYTHON               the python that has torch (python3)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

OUTDIR="${OUT:-/tmp/kt-gpu-out}"
WORK="${KT_GPU_WORK:-/tmp/kt-gpu}"
DEBS="${KT_GPU_DEBS:-.gpu-debs}"
PREFIX="$WORK/deps"
BUILD="${KT_GPU_BUILD_DIR:-build-gpu}"
PY="${PYTHON:-python3}"
BUDGET="${KT_GPU_BUDGET_S:-450}"
JOBS="${KT_GPU_JOBS:-16}"
MODELS="${KT_GPU_MODELS:-llama-3.2-3b,llama-3.1-8b}"
SHAPES="${KT_GPU_MODEL_SHAPES:-real}"
FACTS="${KT_GPU_FACTS:-3}"
PY_FACTS="${KT_GPU_PY_FACTS:-1}"
REF_FACTS="${KT_GPU_REFERENCE_FACTS:-0}"
SAMPLES="${KT_GPU_SAMPLES:-10}"
WINDOW="${KT_GPU_WINDOW:-10}"
NOISE="${KT_GPU_NOISE:-0.1}"
DEVICE="${KT_GPU_DEVICE:-cuda}"
DTYPE="${KT_GPU_DTYPE:-bfloat16}"
SKIP="${KT_GPU_SKIP:-}"
TESTS="${KT_GPU_TESTS:-engines}"
ENGINE_TESTS=(test_fast_engine test_trace test_interventions)
KT="${KNOWTRACE_BIN:-$BUILD/knowtrace}"
START=$(date +%s)
mkdir -p "$OUTDIR" "$WORK"
# set by the steps; defaults so a failed step leaves the later ones well defined
TOKENIZER_NOTE="the tiny llama3 fixture BPE (more tokens per prompt than Llama 3's own: gpu-prepare.sh makes the real one)"
GEN="Unix Makefiles" HAVE_GTEST=0 TORCH_PREFIX="" NVLIBS="" GPU_NAME="no GPU" NO_BUILD="" MODELS_PID=""
DEP_ARGS=() CUDA_ARGS=()

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
# limit CAP: seconds a step may take, CAP or what the budget leaves (keeping 20 s for the table)
limit() { local l=$(( $(left) - 20 )); (( l < $1 )) || l=$1; (( l > 0 )) || l=1; echo "$l"; }
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }
STATUS=()
step() { STEP="$1"; STEP_T0=$(date +%s); echo; echo "=== [$(elapsed) s] $1"; }
done_step() {  # done_step ok|FAILED|skipped [note]
  local dt=$(( $(date +%s) - STEP_T0 ))
  STATUS+=("$STEP|$1|$dt|${2:-}")
  echo "=== $STEP: $1 (${dt} s)${2:+ - $2}"
}
# the C++ programs also see pip's torch/lib and nvidia/*/lib (libtorch_cuda's
# RUNPATH normally finds them; this is belt and braces). Python runs are left as they are.
# Only for binaries this script built against python's torch (not KNOWTRACE_BIN / KT_GPU_TORCH_PREFIX).
cxx_libs() {
  if [ -z "${KNOWTRACE_BIN:-}" ] && [ -z "${KT_GPU_TORCH_PREFIX:-}" ]; then
    echo "${NVLIBS:+$NVLIBS:}${LD_LIBRARY_PATH:-}"
  else
    echo "${LD_LIBRARY_PATH:-}"
  fi
}
last_line() { grep -v -e 'Loading weights' -e '^\s*$' "$1" 2>/dev/null | tail -1 | cut -c1-240; }

machine_facts() {
  step "machine"
  nvidia-smi -L 2>&1 | head -4
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2
  [ -r /etc/os-release ] && (. /etc/os-release; echo "os: $PRETTY_NAME")
  echo "cpus: $(nproc), memory: $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}')"
  echo "compiler: $(c++ --version 2>/dev/null | head -1 || echo none)"
  echo "cmake: $(cmake --version 2>/dev/null | head -1 || echo none); ninja: $(ninja --version 2>/dev/null || echo none)"
  local info
  info=$("$PY" -c 'import torch, transformers; print("python torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available(), "| transformers", transformers.__version__)
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' 2>&1)
  echo "$info" | head -n -1
  GPU_NAME=$(echo "$info" | tail -1)
  done_step ok "$GPU_NAME"
}

find_torch() {
  step "libtorch from python's torch"
  # one python start: torch's CMake prefix, its lib dirs, the GPU's arch
  local info
  info=$("$PY" - <<'PYEOF' 2>"$WORK/torch.err"
import glob, os, torch
site = os.path.dirname(os.path.dirname(torch.__file__))
# pip's CUDA libraries (cublas, cudnn, ...) sit in site-packages/nvidia/*/lib:
# the linker and the tests need them besides torch/lib.
dirs = [os.path.join(os.path.dirname(torch.__file__), "lib")]
dirs += sorted(d for d in glob.glob(os.path.join(site, "nvidia", "*", "lib")) + glob.glob(os.path.join(site, "nvidia", "*", "*", "lib")) if os.path.isdir(d))
arch = "%d.%d" % torch.cuda.get_device_capability(0) if torch.cuda.is_available() else ""
print(torch.utils.cmake_prefix_path)
print(":".join(dirs))
print(arch)
PYEOF
)
  TORCH_PREFIX="${KT_GPU_TORCH_PREFIX:-$(sed -n 1p <<<"$info")}"
  NVLIBS=$(sed -n 2p <<<"$info")
  ARCH=$(sed -n 3p <<<"$info")
  if [ -z "$TORCH_PREFIX" ] || [ ! -d "$TORCH_PREFIX" ]; then
    TORCH_PREFIX=""; done_step FAILED "python3 -c 'import torch' failed: $(last_line "$WORK/torch.err")"; return
  fi
  # The CUDA toolkit that libtorch's CMake config wants (nvcc + headers).
  NVCC="$(command -v nvcc || true)"
  for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do [ -n "$NVCC" ] || { [ -x "$c" ] && NVCC="$c"; }; done
  CUDA_ARGS=()
  if [ -n "$NVCC" ]; then
    export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$NVCC")")}" CUDACXX="$NVCC"
    CUDA_ARGS=(-DCMAKE_CUDA_COMPILER="$NVCC" -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME")
  fi
  # Only what this GPU needs: libtorch's CMake otherwise probes every arch.
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-${ARCH:-9.0}}"
  echo "torch prefix: $TORCH_PREFIX"
  echo "nvcc: ${NVCC:-not found}; CUDA_HOME=${CUDA_HOME:-}; TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
  done_step ok
}

# Ask CMake itself which dependencies are found (same search as the real build).
probe() {
  local dir="$WORK/probe"
  rm -rf "$dir"; mkdir -p "$dir"
  cat > "$dir/CMakeLists.txt" <<'CMEOF'
cmake_minimum_required(VERSION 3.18)
project(ktprobe LANGUAGES CXX)
foreach(p yaml-cpp nlohmann_json CLI11 ZLIB GTest)
  find_package(${p} QUIET)
  if(${p}_FOUND)
    message(STATUS "KTDEP ${p} found")
  else()
    message(STATUS "KTDEP ${p} missing")
  endif()
endforeach()
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  message(STATUS "KTDEP PkgConfig found")
  foreach(m libpcre2-8 libutf8proc cairo)
    string(MAKE_C_IDENTIFIER "${m}" v)
    pkg_check_modules(${v} QUIET ${m})
    if(${v}_FOUND)
      message(STATUS "KTDEP ${m} found")
    else()
      message(STATUS "KTDEP ${m} missing")
    endif()
  endforeach()
else()
  message(STATUS "KTDEP PkgConfig missing")
  message(STATUS "KTDEP libpcre2-8 missing")
  message(STATUS "KTDEP libutf8proc missing")
  message(STATUS "KTDEP cairo missing")
endif()
CMEOF
  cmake -S "$dir" -B "$dir/build" "${DEP_ARGS[@]}" >"$dir/log" 2>&1 || { echo "probe: cmake failed:"; tail -20 "$dir/log"; return 1; }
  grep -o 'KTDEP .*' "$dir/log" | sed 's/^KTDEP //'
}

# .deb files of each dependency, as shell globs in $DEBS
debs_for() {
  case "$1" in
    yaml-cpp) echo "libyaml-cpp-dev_*.deb libyaml-cpp0*.deb";;
    nlohmann_json) echo "nlohmann-json3-dev_*.deb";;
    CLI11) echo "libcli11-dev_*.deb";;
    ZLIB) echo "zlib1g-dev_*.deb zlib1g_*.deb";;
    GTest) echo "libgtest-dev_*.deb";;
    PkgConfig) echo "pkgconf_*.deb pkgconf-bin_*.deb libpkgconf3_*.deb";;
    libpcre2-8) echo "libpcre2-dev_*.deb libpcre2-8-0_*.deb libpcre2-16-0_*.deb libpcre2-32-0_*.deb libpcre2-posix3_*.deb";;
    libutf8proc) echo "libutf8proc-dev_*.deb libutf8proc2_*.deb";;
    ninja) echo "ninja-build_*.deb";;
  esac
}

unpack_deb() {
  if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$1" "$PREFIX"; return; fi
  # no dpkg: a .deb is an ar archive holding data.tar.{xz,zst,gz}
  local t; t=$(mktemp -d)
  (cd "$t" && ar x "$1") || { rm -rf "$t"; return 1; }
  case "$(ls "$t"/data.tar.*)" in
    *.xz) tar -xJf "$t"/data.tar.xz -C "$PREFIX";;
    *.zst) zstd -dc "$t"/data.tar.zst | tar -x -C "$PREFIX";;
    *.gz) tar -xzf "$t"/data.tar.gz -C "$PREFIX";;
    *) rm -rf "$t"; return 1;;
  esac
  rm -rf "$t"
}

# After unpacking: .pc files and absolute symlinks point into $PREFIX.
fix_prefix() {
  find "$PREFIX" -name '*.pc' -print0 | xargs -0 -r sed -i -E "s#^([A-Za-z_]+)=/usr#\1=$PREFIX/usr#"
  while IFS= read -r l; do
    t=$(readlink "$l")
    if [[ "$t" == /* ]] && [ -e "$PREFIX$t" ]; then ln -sfn "$PREFIX$t" "$l"; fi
  done < <(find "$PREFIX" -type l)
}

dependencies() {
  step "build dependencies"
  DEP_ARGS=()
  GEN="Unix Makefiles"
  if ! command -v cmake >/dev/null; then done_step FAILED "no cmake on this machine: cannot build"; NO_BUILD=1; return; fi
  if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null; then
    done_step FAILED "no C++ compiler on this machine: cannot build"; NO_BUILD=1; return
  fi
  local ML="$PREFIX/usr/lib/x86_64-linux-gnu" found missing=() d
  found=$(probe) || { done_step FAILED "the probe project did not configure"; return; }
  echo "$found" | sed 's/^/  /'
  missing=($(echo "$found" | awk '$2 == "missing" && $1 != "cairo" {print $1}'))
  command -v ninja >/dev/null && GEN=Ninja || missing+=(ninja)
  [ "${KT_GPU_FORCE_DEBS:-0}" = 1 ] && missing=(yaml-cpp nlohmann_json CLI11 ZLIB GTest PkgConfig libpcre2-8 libutf8proc ninja)
  if ((${#missing[@]})); then
    echo "unpacking from $DEBS into $PREFIX: ${missing[*]}"
    rm -rf "$PREFIX"; mkdir -p "$PREFIX"
    local lacking=()
    for d in "${missing[@]}"; do
      local got=0
      for g in $(debs_for "$d"); do
        for f in "$DEBS"/$g; do [ -f "$f" ] && unpack_deb "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" && got=1; done
      done
      ((got)) || lacking+=("$d")
    done
    fix_prefix
    export PATH="$PREFIX/usr/bin:$PATH"
    export LD_LIBRARY_PATH="$ML:$PREFIX/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PKG_CONFIG_PATH="$ML/pkgconfig:$PREFIX/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    DEP_ARGS=(-DCMAKE_PREFIX_PATH="$PREFIX/usr")
    # explicit hints too, in case this compiler's multiarch dir is not x86_64-linux-gnu
    [ -d "$ML/cmake/yaml-cpp" ] && DEP_ARGS+=(-Dyaml-cpp_DIR="$ML/cmake/yaml-cpp")
    [ -d "$ML/cmake/GTest" ] && DEP_ARGS+=(-DGTest_DIR="$ML/cmake/GTest")
    [ -d "$PREFIX/usr/share/cmake/CLI11" ] && DEP_ARGS+=(-DCLI11_DIR="$PREFIX/usr/share/cmake/CLI11")
    [ -d "$PREFIX/usr/share/cmake/nlohmann_json" ] && DEP_ARGS+=(-Dnlohmann_json_DIR="$PREFIX/usr/share/cmake/nlohmann_json")
    [ -f "$PREFIX/usr/include/zlib.h" ] && DEP_ARGS+=(-DZLIB_INCLUDE_DIR="$PREFIX/usr/include" -DZLIB_LIBRARY="$ML/libz.so")
    [ -x "$PREFIX/usr/bin/pkgconf" ] && DEP_ARGS+=(-DPKG_CONFIG_EXECUTABLE="$PREFIX/usr/bin/pkgconf")
    command -v ninja >/dev/null && GEN=Ninja
    ((${#lacking[@]})) && echo "NOT in $DEBS (run scripts/gpu-prepare.sh here and carry it): ${lacking[*]}"
    echo "after unpacking:"
    found=$(probe) || true
    echo "$found" | sed 's/^/  /'
  fi
  local still; still=$(echo "$found" | awk '$2 == "missing" && $1 != "cairo" {printf "%s ", $1}')
  HAVE_GTEST=1; echo "$found" | grep -q '^GTest found' || HAVE_GTEST=0
  echo "generator: $GEN; plots: $(echo "$found" | grep -q '^cairo found' && echo with cairo || echo 'without cairo (optional)')"
  if [ -n "$still" ]; then done_step FAILED "still missing: $still"; else done_step ok "${missing[*]:+unpacked: ${missing[*]}}"; fi
}

configure_build() {
  step "configure (cmake)"
  if skipped build; then done_step skipped "KT_GPU_SKIP"; return; fi
  if [ -n "${NO_BUILD:-}" ] || [ -z "${TORCH_PREFIX:-}" ]; then done_step skipped "no cmake/compiler/libtorch"; return; fi
  local args=(-G "$GEN" -DCMAKE_BUILD_TYPE=Release -DKNOWTRACE_TESTS=$([ "$HAVE_GTEST" = 1 ] && echo ON || echo OFF)
              "${CUDA_ARGS[@]}" "${DEP_ARGS[@]}")
  # CMAKE_PREFIX_PATH: libtorch first, then the unpacked prefix (if any)
  local pp="$TORCH_PREFIX"; [ -d "$PREFIX/usr" ] && pp="$pp;$PREFIX/usr"
  args+=(-DCMAKE_PREFIX_PATH="$pp")
  # libtorch's config looks its own libraries up with find_library(PATHS ...),
  # which prefers any system libtorch: name pip's explicitly
  local tl; tl="$(cd "$TORCH_PREFIX/../.." 2>/dev/null && pwd)/lib"
  [ -f "$tl/libtorch.so" ] && args+=(-DTORCH_LIBRARY="$tl/libtorch.so")
  [ -f "$tl/libc10_cuda.so" ] && args+=(-DC10_CUDA_LIBRARY="$tl/libc10_cuda.so")
  # the linker must find libtorch_cuda's own dependencies (pip's nvidia/*/lib)
  [ -n "${NVLIBS:-}" ] && args+=(-DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$NVLIBS")
  echo "cmake -S . -B $BUILD ${args[*]}" | cut -c1-600
  if ! timeout "$(limit 120)" cmake -S . -B "$BUILD" "${args[@]}" >"$WORK/configure.log" 2>&1; then
    if grep -qi "does not match\|CMakeCache.txt directory" "$WORK/configure.log"; then
      rm -rf "$BUILD"; timeout "$(limit 120)" cmake -S . -B "$BUILD" "${args[@]}" >"$WORK/configure.log" 2>&1 && { done_step ok "fresh build dir"; return; }
    fi
    grep -E "CMake Error|Could not|not found|error" "$WORK/configure.log" | head -15; tail -15 "$WORK/configure.log"
    CONFIGURE_FAILED=1; done_step FAILED "$(grep -m1 'CMake Error' -A2 "$WORK/configure.log" | tr '\n' ' ' | cut -c1-200)"
    return
  fi
  grep -E "cairo|CUDA detected|Found Torch|KTDEP" "$WORK/configure.log" | head -5
  done_step ok

  if skipped compile; then step "build"; done_step skipped "KT_GPU_SKIP=compile"; return; fi

  step "build (-j$JOBS)"
  local targets=(knowtrace)
  if [ "$HAVE_GTEST" = 1 ] && ! skipped tests; then
    if [ "$TESTS" = all ]; then targets=(all); else targets+=("${ENGINE_TESTS[@]}"); fi
  fi
  if timeout "$(limit 330)" cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" >"$WORK/build.log" 2>&1; then
    done_step ok "${targets[*]}"
  else
    grep -E "error|Error" "$WORK/build.log" | head -20; tail -5 "$WORK/build.log"
    # the tests may fail to build while knowtrace itself is fine
    if [ ! -x "$KT" ] && ! timeout "$(limit 120)" cmake --build "$BUILD" -j "$JOBS" --target knowtrace >>"$WORK/build.log" 2>&1; then
      done_step FAILED "knowtrace did not build (see the log)"
    else
      done_step FAILED "some test targets did not build; knowtrace did"
    fi
  fi
}

run_tests() {
  if [ "$TESTS" = all ]; then run_ctest; return; fi
  for t in "${ENGINE_TESTS[@]}"; do
    step "tests: $t (KNOWTRACE_TEST_DEVICE=$DEVICE)"
    if skipped tests; then done_step skipped "KT_GPU_SKIP"; continue; fi
    if [ ! -x "$BUILD/$t" ]; then done_step skipped "not built"; continue; fi
    local note=""
    grep -q KNOWTRACE_TEST_DEVICE "tests/unit/$t.cpp" || note="NOTE: $t does not read KNOWTRACE_TEST_DEVICE yet, so it ran on the CPU; "
    if LD_LIBRARY_PATH="$(cxx_libs)" KNOWTRACE_TEST_DEVICE="$DEVICE" KT_SOURCE_DIR="$ROOT" timeout "$(limit 150)" "$BUILD/$t" >"$WORK/$t.log" 2>&1; then
      done_step ok "$note$(grep -E '^\[  PASSED  \]' "$WORK/$t.log" | tail -1)"
    else
      local rc=$?
      grep -E '^\[  FAILED  \]|Failure|error' "$WORK/$t.log" | head -20
      # a crash prints no FAILED line: show where it stopped (the last [ RUN ] is the test that died)
      if ((rc > 128 && rc != 137)); then echo "--- $t died by signal $((rc - 128)); last lines of its log:"; tail -15 "$WORK/$t.log"; fi
      cp "$WORK/$t.log" "$OUTDIR/$t.log" 2>/dev/null
      done_step FAILED "$note$( ((rc == 124)) && echo "timed out; " )$( ((rc > 128 && rc != 137)) && echo "crashed (signal $((rc - 128))) in $(grep -E '^\[ RUN      \]' "$WORK/$t.log" | tail -1 | sed 's/^\[ RUN      \] //'); " )$(grep -E '^\[  (PASSED|FAILED)  \]' "$WORK/$t.log" | head -2 | tr '\n' ' ')"
    fi
    grep -E '^\[fast\]' "$WORK/$t.log" | head -10
  done
}

# KT_GPU_TESTS=all: the whole suite through ctest, the device-aware tests on
# the GPU (KNOWTRACE_TEST_DEVICE) and the rest against this machine's libtorch
# build (the npz tests among them).
run_ctest() {
  step "tests: every ctest entry (KNOWTRACE_TEST_DEVICE=$DEVICE, -j$JOBS)"
  if skipped tests; then done_step skipped "KT_GPU_SKIP"; return; fi
  if [ ! -f "$BUILD/CTestTestfile.cmake" ]; then done_step skipped "not built"; return; fi
  local rc=0
  (cd "$BUILD" && LD_LIBRARY_PATH="$(cxx_libs)" KNOWTRACE_TEST_DEVICE="$DEVICE" OMP_WAIT_POLICY=PASSIVE \
     timeout "$(limit 400)" ctest -j "$JOBS" --timeout 300 --output-on-failure) >"$WORK/ctest.log" 2>&1 || rc=$?
  cp "$WORK/ctest.log" "$OUTDIR/ctest.log" 2>/dev/null
  grep -E '^\s*[0-9]+ - .*\((Failed|SEGFAULT|Subprocess aborted|Timeout|Exception|Child aborted)' "$WORK/ctest.log" | head -30
  local summary; summary=$(grep -E 'tests passed|tests failed' "$WORK/ctest.log" | tail -1)
  if ((rc == 0)); then done_step ok "$summary"
  else done_step FAILED "$( ((rc == 124)) && echo "timed out; " )${summary:-ctest exit $rc}"; fi
}

facts_file() {
  for f in "${KNOWTRACE_DATA_DIR:+$KNOWTRACE_DATA_DIR/known_1000.json}" "$DEBS/known_1000.json" \
           shared/data/known_1000.json ../shared/data/known_1000.json; do
    [ -n "$f" ] && [ -f "$f" ] && { FACTS_FILE="$(cd "$(dirname "$f")" && pwd)/known_1000.json"; FACTS_NOTE="known_1000"; return; }
  done
  FACTS_FILE="$WORK/facts.json"; FACTS_NOTE="4 built-in facts (known_1000.json not carried)"
  cat > "$FACTS_FILE" <<'JEOF'
[{"prompt": "Vinson Massif is located in the continent of", "subject": "Vinson Massif"},
 {"prompt": "The Eiffel Tower is located in the city of", "subject": "The Eiffel Tower"},
 {"prompt": "The mother tongue of Danielle Darrieux is", "subject": "Danielle Darrieux"},
 {"prompt": "Miles Davis plays the", "subject": "Miles Davis"}]
JEOF
}

start_models() {  # random-weight checkpoints, made in the background while knowtrace compiles
  step "models: start $MODELS ($SHAPES shapes) in the background"
  if skipped models; then done_step skipped "KT_GPU_SKIP"; return; fi
  local tok=() t="$WORK/llama3-tokenizer"
  if [ -f "$DEBS/llama3-tokenizer/tokenizer.json.gz" ] && mkdir -p "$t" &&
     gzip -dc "$DEBS/llama3-tokenizer/tokenizer.json.gz" >"$t/tokenizer.json" &&
     cp "$DEBS/llama3-tokenizer/tokenizer_config.json" "$t/"; then
    tok=(--tokenizer "$t")
    TOKENIZER_NOTE="Llama 3's own (llama-models 0.3.0's tokenizer.model as tokenizer.json, bench/llama3_tokenizer.py)"
  fi
  ( timeout "$(limit 300)" "$PY" bench/gpu_models.py --out "$MODEL_DIR" --models "$MODELS" --shapes "$SHAPES" "${tok[@]}" \
      >"$WORK/models.json" 2>"$WORK/models.err" ) &
  MODELS_PID=$!
  done_step ok "pid $MODELS_PID, into $MODEL_DIR"
}

wait_models() {  # nothing is timed while the GPU is still busy making models
  [ -n "${MODELS_PID:-}" ] || return
  step "models: wait for $MODELS"
  while kill -0 "$MODELS_PID" 2>/dev/null; do
    if (( $(left) < 60 )); then kill "$MODELS_PID" 2>/dev/null; echo "stopped: budget" >>"$WORK/models.err"; break; fi
    sleep 1
  done
  wait "$MODELS_PID"; local rc=$?
  grep '^gpu_models:' "$WORK/models.err" | sed 's/^/  /'
  if ((rc == 0)); then done_step ok; else done_step FAILED "$(last_line "$WORK/models.err")"; fi
}

bench_model() {  # bench_model NAME
  local name="$1" path
  path=$(grep "^gpu_models: $name -> " "$WORK/models.err" 2>/dev/null | sed 's/.* -> \([^ ]*\) .*/\1/' | tail -1)
  if [ -z "$path" ]; then
    echo "model $name was not made: $(last_line "$WORK/models.err")" | tee "$WORK/kt-$name.err" >"$WORK/rome-$name.err"
    step "bench $name"; done_step skipped "no model"; return
  fi

  local engines=fast; ((REF_FACTS > 0)) && engines=fast,reference
  step "knowtrace bench $name ($DEVICE, $DTYPE, $FACTS facts, S=$SAMPLES, W=$WINDOW, engines $engines)"
  if skipped bench; then done_step skipped "KT_GPU_SKIP"
  elif [ ! -x "$KT" ]; then echo "knowtrace was not built" >"$WORK/kt-$name.err"; done_step skipped "no knowtrace binary"
  elif (( $(left) < 30 )); then echo "skipped: budget" >"$WORK/kt-$name.err"; done_step skipped "budget"
  else
    local lim; lim=$(limit 150)
    if LD_LIBRARY_PATH="$(cxx_libs)" timeout "$lim" "$KT" bench --model "$path" --data "$FACTS_FILE" --facts "$FACTS" --reference-facts "$REF_FACTS" \
        --engines "$engines" --samples "$SAMPLES" --window "$WINDOW" --noise "$NOISE" --dtype "$DTYPE" \
        --device "$DEVICE" --json >"$WORK/kt-$name.json" 2>"$WORK/kt-$name.err"; then
      done_step ok "$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("fast %.2f s/fact" % (d["total"]["fast_seconds"]/max(1,len(d["facts"]))))' "$WORK/kt-$name.json" 2>/dev/null)"
    else
      local rc=$?; ((rc == 124)) && echo "timed out after $lim s (budget)" >>"$WORK/kt-$name.err"
      rm -f "$WORK/kt-$name.json"; done_step FAILED "$(last_line "$WORK/kt-$name.err")"
    fi
  fi

  step "ROME on transformers (a) $name ($DEVICE, $DTYPE, $PY_FACTS fact(s))"
  if skipped bench; then done_step skipped "KT_GPU_SKIP"
  elif (( $(left) < 40 )); then echo "skipped: budget ($(left) s left)" >"$WORK/rome-$name.err"; done_step skipped "budget"
  else
    local lim; lim=$(limit 200)
    if timeout "$lim" "$PY" bench/rome_baseline.py --model "$path" --data "$FACTS_FILE" --facts "$PY_FACTS" \
        --samples "$SAMPLES" --window "$WINDOW" --noise "$NOISE" --dtype "$DTYPE" --device "$DEVICE" \
        >"$WORK/rome-$name.json" 2>"$WORK/rome-$name.err"; then
      done_step ok "$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f s/fact" % d["seconds_per_fact"])' "$WORK/rome-$name.json" 2>/dev/null)"
    else
      local rc=$?; ((rc == 124)) && echo "timed out after $lim s (budget): raise KT_GPU_BUDGET_S or lower KT_GPU_SAMPLES" >>"$WORK/rome-$name.err"
      rm -f "$WORK/rome-$name.json"; done_step FAILED "$(last_line "$WORK/rome-$name.err")"
    fi
  fi
}

mean_tokens() {  # over the facts knowtrace benchmarked, every model
  "$PY" - "$WORK" <<'PYEOF' 2>/dev/null || echo "n/a"
import glob, json, os, sys
n = [f["tokens"] for p in glob.glob(os.path.join(sys.argv[1], "kt-*.json")) for f in json.load(open(p)).get("facts", [])]
print("%.1f" % (sum(n) / len(n)) if n else "n/a")
PYEOF
}

report() {
  step "table"
  local args=() name
  for name in ${MODELS//,/ }; do
    args+=(--section "$name shapes ($SHAPES), random weights" --kt "$WORK/kt-$name.json"
           --baseline "ROME on transformers (a)=$WORK/rome-$name.json")
  done
  {
    "$PY" bench/bench_table.py --title "knowtrace fast vs ROME on transformers, $GPU_NAME, $DTYPE ($(date -u +%Y-%m-%d))" "${args[@]}"
    echo "Facts: $FACTS_NOTE (knowtrace fast on $FACTS, the Python baseline on $PY_FACTS; speed-ups over the same facts)."
    echo "S=$SAMPLES, W=$WINDOW, noise $NOISE. Tokenizer: $TOKENIZER_NOTE; $(mean_tokens) tokens per benchmarked prompt on average."
    echo
    echo "### Steps"
    echo
    echo "| step | status | seconds | note |"
    echo "|---|---|---|---|"
    local s
    for s in "${STATUS[@]}"; do
      IFS='|' read -r a b c d <<<"$s"
      echo "| $a | $b | $c | ${d//|//} |"
    done
    echo
    echo "Total: $(elapsed) s of a $BUDGET s budget."
  } >"$OUTDIR/gpu-results.md"
  "$PY" - "$WORK" "$OUTDIR/gpu-results.json" <<'PYEOF'
import glob, json, os, sys
work, out = sys.argv[1], sys.argv[2]
runs = {}
for f in sorted(glob.glob(os.path.join(work, "*.json"))):
    try:
        runs[os.path.basename(f)[:-5]] = json.load(open(f))
    except ValueError:
        pass
json.dump(runs, open(out, "w"), indent=1)
PYEOF
  echo
  cat "$OUTDIR/gpu-results.md"
}

main() {
  echo "gpu-check: $(date -u), budget $BUDGET s, results in $OUTDIR"
  machine_facts
  find_torch
  dependencies
  MODEL_DIR="$WORK/models"
  # random weights are written, then read back: RAM-backed /dev/shm when it is big enough
  if [ "$SHAPES" = real ] && [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print int($4/1048576)}')" -ge 40 ] 2>/dev/null; then
    MODEL_DIR=/dev/shm/kt-gpu-models
  fi
  start_models
  configure_build
  facts_file
  # the tests that read known_1000 find it through KNOWTRACE_DATA_DIR
  [ "$FACTS_NOTE" = known_1000 ] && export KNOWTRACE_DATA_DIR="$(dirname "$FACTS_FILE")"
  run_tests
  wait_models
  echo; echo "facts: $FACTS_FILE ($FACTS_NOTE)"
  for name in ${MODELS//,/ }; do bench_model "$name"; done
  report
  echo "gpu-check: done in $(elapsed) s"
}

main 2>&1 | tee "$OUTDIR/gpu-check.log"
