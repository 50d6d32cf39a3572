# SPDX-License-Identifier: MIT
# Sourced by the program tests that train every model family (run_mpi_train.sh, run_precision.sh).
# for_each_family FN: calls `FN NAME MODEL [MODEL FLAGS...]` for each family at a small size.
for_each_family() {
  local fn="$1"
  "$fn" transformer transformer --context 32
  "$fn" hourglass hourglass --context 32 --hierarchy "1@1 1@2 1@1"
  "$fn" hierarchical hierarchical
  "$fn" transformer-xl transformer-xl --context 32 --mem-len 32
  "$fn" compressive compressive --context 32
  "$fn" autoencoder autoencoder --window 32 --reduce 2
}
