# SPDX-License-Identifier: MIT
# Sourced by the measurement scripts of bench/ (hred_haed_claims.sh, compressive_claims.sh,
# autoencoder_sweep.sh): the record of the machine a measurement ran on.

# bench_env_lines ROOT PROGRAM THREADS: "key: value" lines on stdout: the date, the git revision of
# ROOT (and whether its tree was modified), the CPU, the memory, the BLAS library PROGRAM links and
# the core OpenBLAS picks on this machine without the OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
# overrides (as a user's machine runs it; the scripts run every program that way), the threads.
bench_env_lines() {
  local root="$1" program="$2" threads="$3" blas
  blas="$(ldd "$program" 2>/dev/null | awk '/libopenblas|libblas/ { print $3; exit }')"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (working tree modified)')"
  echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(getconf _NPROCESSORS_ONLN) cores online, threads $threads"
  echo "cpu flags: $(for f in avx2 avx512f avx512_bf16 amx_bf16 amx_tile; do grep -qw "$f" /proc/cpuinfo && printf '%s ' "$f" || printf 'no-%s ' "$f"; done)"
  echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "onednn: $(dpkg-query -W -f='${Package} ${Version}' libdnnl-dev 2>/dev/null || echo 'not installed')"
  echo "blas: ${blas:-none found by ldd}"
  if [ -n "$blas" ] && command -v python3 > /dev/null; then
    echo "openblas_get_corename(): $(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 -c "
import ctypes, sys
l = ctypes.CDLL(sys.argv[1]); l.openblas_get_corename.restype = ctypes.c_char_p
print(l.openblas_get_corename().decode())" "$blas" 2>/dev/null || echo unknown)"
  fi
  echo "environment: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE, OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads"
}
