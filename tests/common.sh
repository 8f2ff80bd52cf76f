# Shared helpers for the scripted tests (tests/test_*.sh). Source it:
#     . "$(dirname "$0")/common.sh"
# ctest calls every script as: bash test_x.sh CHARGAN_BINARY BUILD_DIR SOURCE_DIR
#
# What it provides:
#   mpirun_np N CMD...    the launcher of the MPI chargan was built with (ctest passes
#                         CHARGAN_MPIEXEC and CHARGAN_MPI_FLAVOR; by hand: Open MPI's mpirun)
#                         with N ranks on this machine, oversubscribed, allowed as root, shared
#                         memory only, under a timeout ($CG_TIMEOUT seconds, default 300) so a
#                         hang fails instead of stalling ctest; a timeout returns 124.
#   launcher N            prints that launcher's command words for N ranks (for `bash -c`).
#   $MPIEXEC              the launcher's path (to find it with pkill -f).
#   emnist_dir SRC        prints the EMNIST directory ($EMNIST_DIR, else SRC/../shared/data/emnist);
#                         fails the test if it is missing (the data is part of the test setup).
#   fail MSG              prints "FAIL: MSG" and exits 1.
#   ok MSG                prints "ok: MSG".
#   make_tmpdir           sets $TMP to a fresh directory removed when the script exits.
#   expect_error RC_FILE ERR_FILE WHAT PATTERN...
#                         checks a command's saved exit status and stderr: status not 0 and not
#                         124 (timeout), exactly one "chargan: error:" line, containing every
#                         PATTERN (fixed strings).
# (No shell options are set here: the sourcing script chooses its own.)

# Open MPI refuses to start as root without both of these (CI and containers run as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One node, no network: self + vader (shared memory) is all that is needed, and it keeps Open MPI
# from probing network interfaces that containers do not have.
export OMPI_MCA_btl=self,vader

# In AddressSanitizer builds, Open MPI's allocations that outlive MPI_Finalize would make every
# MPI program fail LeakSanitizer; leak detection stays off unless the caller asks otherwise.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

MPIEXEC=${CHARGAN_MPIEXEC:-mpirun}
# Open MPI refuses more ranks than cores without --oversubscribe and probes networks unless told
# to use shared memory; MPICH's hydra oversubscribes, runs as root and picks shared memory on
# one host by itself.
launcher() {
    case ${CHARGAN_MPI_FLAVOR:-openmpi} in
    mpich) echo "$MPIEXEC -n $1" ;;
    *) echo "$MPIEXEC --oversubscribe --bind-to none -np $1 --mca btl self,vader" ;;
    esac
}

mpirun_np() {
    local n=$1
    shift
    # shellcheck disable=SC2046
    timeout --kill-after=10 "${CG_TIMEOUT:-300}" $(launcher "$n") "$@"
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

ok() {
    echo "ok: $*"
}

emnist_dir() {
    local src=$1 d
    if [ -n "${EMNIST_DIR:-}" ]; then
        d=$EMNIST_DIR
    else
        d=$src/../shared/data/emnist
    fi
    [ -d "$d" ] || fail "EMNIST data not found at $d (set EMNIST_DIR; see the project README)"
    (cd "$d" && pwd)
}

make_tmpdir() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/chargan-test.XXXXXX") || fail "mktemp"
    chmod 755 "$TMP"  # readable by the unprivileged user of permission tests
    # shellcheck disable=SC2064
    trap "rm -rf '$TMP'" EXIT
}

expect_error() {
    local rc_file=$1 err_file=$2 what=$3
    shift 3
    local rc lines
    rc=$(cat "$rc_file")
    [ "$rc" != 0 ] || fail "$what: exit status 0, expected an error"
    [ "$rc" != 124 ] && [ "$rc" != 137 ] || fail "$what: timed out (hang?)"
    lines=$(grep -c '^chargan: error:' "$err_file" || true)
    [ "$lines" = 1 ] || { cat "$err_file" >&2; fail "$what: $lines 'chargan: error:' lines, expected 1"; }
    local p
    for p in "$@"; do
        grep '^chargan: error:' "$err_file" | grep -qF -- "$p" ||
            { cat "$err_file" >&2; fail "$what: error line lacks '$p'"; }
    done
    ok "$what: $(grep '^chargan: error:' "$err_file" | cut -c1-200)"
}
