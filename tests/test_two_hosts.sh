#!/usr/bin/env bash
# ctest entry: two "hosts" (network + UTS namespaces joined by a veth pair) run chargan over
# Open MPI's TCP transport; see tests/netns/run.sh. Needs root; prints SKIP otherwise.
# Arguments (from ctest): CHARGAN_BINARY BUILD_DIR SOURCE_DIR
set -u
BIN=$1 SRC=$3
exec timeout --kill-after=20 300 bash "$SRC/tests/netns/run.sh" "$BIN" "$SRC"
