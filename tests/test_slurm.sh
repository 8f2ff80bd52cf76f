#!/usr/bin/env bash
# ctest entry: a real single-node Slurm cluster runs jobs/train.sbatch (see tests/slurm/run.sh).
# As root (CI: a fresh Debian 12) it installs slurm-wlm and munge with apt-get when missing;
# as another user it prints SKIP and passes, because it cannot start the daemons.
# Arguments (from ctest): CHARGAN_BINARY BUILD_DIR SOURCE_DIR
set -u
BIN=$1 SRC=$3
exec timeout --kill-after=20 1000 bash "$SRC/tests/slurm/run.sh" "$BIN" "$SRC"
