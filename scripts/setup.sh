#!/usr/bin/env bash
# Installs hseq's build and test dependencies (Debian packages). Idempotent: does nothing when
# every package is already installed. Runs apt-get as root, or through sudo when not root.
set -euo pipefail

PACKAGES=(
  cmake
  ninja-build
  g++
  libeigen3-dev
  doctest-dev
  libbenchmark-dev
  nlohmann-json3-dev
  libopenblas-openmp-dev
  # hseq::cpu_bf16: oneDNN's bf16 matmul (AVX512-BF16 / AMX); without it the bf16 GEMMs are emulated
  libdnnl-dev
  bible-kjv
  # data-parallel training: MPI for the programs and the tests under mpirun (label mpi)
  libopenmpi-dev
  openmpi-bin
  # the fuzz stage of scripts/test.sh: Clang, its libFuzzer and sanitizer runtimes, its OpenMP
  clang
  libclang-rt-dev
  libomp-dev
)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup.sh: all dependencies are installed"
  exit 0
fi
echo "setup.sh: installing ${missing[*]}"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "setup.sh: not root and no sudo; install these packages first: ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
}

# Refresh the package lists only when there are none, or when installing from the ones present fails.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  "${SUDO[@]}" apt-get update
  apt_install
elif ! apt_install; then
  "${SUDO[@]}" apt-get update
  apt_install
fi
