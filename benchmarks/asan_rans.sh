#!/usr/bin/env bash
# The compiled rANS coder's tests under AddressSanitizer: _rans.c built with
# -fsanitize=address into a temporary folder that shadows the installed module, then
# tests/test_rans.py and the hostile-string tests of tests/test_hyperprior.py run against it
# (libasan preloaded into Python, and Python's objects allocated by malloc, so that ASan
# sees a read past a bytes object's end). A read past a string's end, which the coder's checks
# exist to prevent, is an ASan report and a non-zero exit. Prints its wall time.
#
#   bash tools/with-venv.sh bash benchmarks/asan_rans.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s.%N)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/slimcodec/bitstream"
include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
gcc -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address -I"$include" \
    slimcodec/bitstream/_rans.c -o "$work/_rans$suffix"
# The instrumented module replaces the installed one for this run only.
cat > "$work/sitecustomize.py" <<PY
import importlib.machinery, importlib.util, sys
spec = importlib.util.spec_from_file_location("slimcodec.bitstream._rans", "$work/_rans$suffix")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["slimcodec.bitstream._rans"] = module
PY
# libstdc++ preloaded too: without it ASan cannot intercept the C++ exceptions that
# compressai's extension throws while it loads.
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
    ASAN_OPTIONS=detect_leaks=0:log_path="$work/asan" PYTHONMALLOC=malloc \
    PYTHONPATH="$work" OMP_NUM_THREADS=1 SLIMCODEC_ASAN_MODULE="$work/_rans$suffix" \
    python -m pytest -q -p no:cacheprovider tests/test_rans.py \
    "tests/test_hyperprior.py::test_hostile_z_strings_are_refused" \
    "tests/test_fuzz.py" || status=$?
# pytest captures file descriptor 2, where ASan would report: its reports go to files.
if compgen -G "$work/asan.*" >/dev/null; then
    cat "$work"/asan.*
    echo "asan_rans: AddressSanitizer reported an error" >&2
    exit 1
fi
[ "${status:-0}" = 0 ] || exit "$status"
PYTHONPATH="$work" python -c 'import slimcodec.bitstream.rans as r; print("instrumented module:", r._rans.__file__)' 2>/dev/null || true
echo "asan_rans: $(python -c "print(round($(date +%s.%N) - $start, 1))") s"
