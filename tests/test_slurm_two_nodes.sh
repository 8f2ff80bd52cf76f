#!/usr/bin/env bash
# ctest entry: a real two-node Slurm cluster in network namespaces runs jobs/train.sbatch across
# both nodes under both launchers and through a preemption (see tests/slurm/two_nodes.sh).
# As root it installs slurm-wlm and munge with apt-get when missing; without root, namespaces
# or Slurm it prints SKIP and exits 77 (ctest's skip code for this test).
# Arguments (from ctest): CHARGAN_BINARY BUILD_DIR SOURCE_DIR
set -u
BIN=$1 SRC=$3
exec timeout --kill-after=20 1150 bash "$SRC/tests/slurm/two_nodes.sh" "$BIN" "$SRC"
