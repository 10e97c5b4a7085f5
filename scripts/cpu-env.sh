# Sourced by the scripts that run knowtrace (run.sh, scripts/test.sh,
# scripts/sanitize.sh, bench/python_baselines.sh): the CPU BLAS's core type.
# OpenBLAS 0.3.21 (Debian 12) does not know the newer AVX-512 CPUs (Zen 4,
# Sapphire Rapids) and takes them for Prescott, its slowest kernels; its
# SkylakeX kernels suit them. Only where the CPU has AVX-512: elsewhere those
# kernels are illegal instructions, and OpenBLAS's own choice (Zen, Haswell)
# is right. The core type changes speed, never results. A value you set wins.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
