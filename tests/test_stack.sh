# Any result can be traced to its stack: `chargan --version` names chargan's version (with
# git describe), the MPI library, the BLAS (library, build, core, file) and HDF5; the same four
# strings are attributes of every checkpoint and sample file (training's and `chargan sample`'s),
# members of the run's first metrics line, and shown by `chargan info`.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")

"$BIN" --version >"$TMP/version" || fail "chargan --version failed"
ver=$(sed -n 's/^chargan //p' "$TMP/version")
mpi=$(sed -n 's/^MPI: *//p' "$TMP/version")
blas=$(sed -n 's/^BLAS: *//p' "$TMP/version")
hdf5=$(sed -n 's/^HDF5: *//p' "$TMP/version")
echo "$ver" | grep -qE '^[0-9]+\.[0-9]+\.[0-9]+' || fail "version '$ver' does not start with X.Y.Z"
[ -d "$SRC/.git" ] && { echo "$ver" | grep -q '(git ' || fail "version '$ver' lacks git describe"; }
echo "$mpi" | grep -qE 'Open MPI|MPICH' || fail "MPI library '$mpi' not recognized"
echo "$blas" | grep -qE '^[^ ]+ .*\((openmp|pthread|serial|unknown) build, core [^,]+, /' ||
    fail "BLAS line '$blas' lacks library, build, core or file"
echo "$hdf5" | grep -qE '^[0-9]+\.[0-9]+\.[0-9]+$' || fail "HDF5 version '$hdf5'"
[ "$(wc -l <"$TMP/version")" = 4 ] || fail "--version prints $(wc -l <"$TMP/version") lines, expected 4"
ok "--version: $(tr '\n' '|' <"$TMP/version")"

mpirun_np 2 "$BIN" train --data "$DATA" --split bymerge-test --limit 2000 --model small \
    --steps 2 --sample-every 2 --log-every 1 --out "$TMP/run" >"$TMP/run.log" 2>&1 ||
    { cat "$TMP/run.log"; fail "training failed"; }
CK=$TMP/run/checkpoints/step-00000002.h5
SM=$TMP/run/samples/step-00000002.h5
"$BIN" sample --checkpoint "$CK" --n 4 --out "$TMP/s.h5" >/dev/null 2>&1 || fail "chargan sample failed"
attr() { h5dump -a "/$1" "$2" 2>/dev/null | sed -n 's/^ *(0): "\(.*\)"$/\1/p'; }
for f in "$CK" "$SM" "$TMP/s.h5"; do
    [ "$(attr chargan_version "$f")" = "$ver" ] || fail "$f: chargan_version '$(attr chargan_version "$f")'"
    [ "$(attr mpi_library "$f")" = "$mpi" ] || fail "$f: mpi_library '$(attr mpi_library "$f")'"
    [ "$(attr blas_library "$f")" = "$blas" ] || fail "$f: blas_library '$(attr blas_library "$f")'"
    [ "$(attr hdf5_version "$f")" = "$hdf5" ] || fail "$f: hdf5_version '$(attr hdf5_version "$f")'"
    "$BIN" info "$f" >"$TMP/info" 2>&1 || fail "chargan info $f failed"
    grep -qxF "written by:    chargan $ver" "$TMP/info" && grep -qF "BLAS:        $blas" "$TMP/info" ||
        { cat "$TMP/info"; fail "chargan info $f does not show the stack"; }
done
ok "checkpoint, training sample file and chargan sample's file record the four, info shows them"

first=$(head -1 "$TMP/run/metrics.jsonl")
for kv in "\"start\": true" "\"ranks\": 2" "\"chargan_version\": \"$ver\"" \
    "\"mpi_library\": \"$mpi\"" "\"blas_library\": \"$blas\"" "\"hdf5_version\": \"$hdf5\""; do
    echo "$first" | grep -qF -- "$kv" || fail "first metrics line lacks $kv: $first"
done
ok "first metrics line: $(echo "$first" | cut -c1-160)..."
echo "stack tests passed"
