"""bench/isa_env.py: the environment that makes the benchmarks measure a lower
ISA.  The point of it: ``NUMBA_CPU_NAME=haswell`` alone keeps the host's
features, so on an AVX-512 machine Numba still emitted zmm registers and
``vpternlogd`` (seen 2026-12-04 on an AVX-512 Xeon); with the environment of
``isa_env("avx2")`` the compiled code must hold no AVX-512 instruction."""

import os
import platform
import re
import subprocess
import sys

import pytest

from isa_env import ISAS, isa_env, main

# EVEX-only forms: 512-bit or upper-16 registers, mask registers, embedded
# broadcasts, and instructions AVX2 does not have
_EVEX = re.compile(r"zmm\d|ymm(?:1[6-9]|2\d|3[01])\b|%k[1-7]|\{1to\d+\}|vpternlog|vprol|vpror|"
                   r"vpmullq|vpcompress|vpexpand|vpermt2|vpermi2")

_PROBE = r"""
import numba, numpy as np
@numba.njit
def f(a, out, k):
    for i in range(a.shape[0]):
        p = np.uint64(a[i]) * np.uint64(0xD2511F53)
        out[i] = np.uint32((p >> np.uint64(32)) ^ np.uint64(a[i]) ^ np.uint64(k))
a = np.arange(4096, dtype=np.uint32)
out = np.empty_like(a)
f(a, out, np.uint32(5))
p = a.astype(np.uint64) * np.uint64(0xD2511F53)
want = ((p >> np.uint64(32)) ^ a ^ np.uint64(5)).astype(np.uint32)
assert (out == want).all()
print(f.inspect_asm(f.signatures[0]))
"""


def _host_has_avx2():
    try:
        from llvmlite import binding
        return bool(binding.get_host_cpu_features().get("avx2"))
    except Exception:  # noqa: BLE001 - no llvmlite, or LLVM cannot read the features
        return False


#: The AVX2 environment's code runs only where the CPU has AVX2.
needs_avx2_host = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not _host_has_avx2(),
    reason="an x86-64 CPU with AVX2 only")


def test_every_isa_caps_the_cython_kernels():
    for isa in ISAS:
        assert isa_env(isa)["FASTDROP_MAX_ISA"] == isa
    assert set(isa_env("avx512")) == set(isa_env("portable")) == {"FASTDROP_MAX_ISA"}
    with pytest.raises(ValueError, match="isa must be one of"):
        isa_env("sse2")


def test_cli_prints_exports(capsys):
    main(["portable"])
    assert capsys.readouterr().out == "export FASTDROP_MAX_ISA=portable\n"
    with pytest.raises(SystemExit):
        main(["avx1024"])


@needs_avx2_host
def test_numba_compiles_avx2_code_under_the_avx2_environment():
    pytest.importorskip("numba")
    env = isa_env("avx2")
    feats = env["NUMBA_CPU_FEATURES"].split(",")
    assert env["NUMBA_CPU_NAME"] == "haswell"
    assert not [f for f in feats if f.startswith(("+avx512", "+amx", "+avx10", "+evex512"))]
    r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                       env=dict(os.environ, **env))
    assert r.returncode == 0, r.stderr
    assert "vpmuludq" in r.stdout or "ymm" in r.stdout  # it did vectorise, with AVX2
    assert _EVEX.findall(r.stdout) == []


def test_rerun_under_execs_once_with_the_environment(monkeypatch):
    """The scripts' --isa: the script again with the same arguments, under
    isa_env and the marker that stops a second re-run; nothing otherwise."""
    import isa_env as mod
    calls = []
    monkeypatch.setattr(mod.os, "execve", lambda *a: calls.append(a))
    monkeypatch.delenv("_FASTDROP_ISA_ENV", raising=False)
    mod.rerun_under(None, "x.py", ["--a"])
    assert calls == []
    mod.rerun_under("portable", "x.py", ["--a", "1"])
    (exe, args, env), = calls
    assert exe == sys.executable
    assert args == [sys.executable, os.path.abspath("x.py"), "--a", "1"]
    assert env["_FASTDROP_ISA_ENV"] == "portable" and env["FASTDROP_MAX_ISA"] == "portable"
    monkeypatch.setenv("_FASTDROP_ISA_ENV", "portable")
    mod.rerun_under("portable", "x.py", ["--a"])
    assert len(calls) == 1


_LANES_PARITY = r"""
import numpy as np
import fastdrop
from fastdrop._numba import kernels as K
assert K._PHILOX_LANES, "philox_blocks not chosen for an AVX2 target"
rng = np.random.default_rng(3)
bad = []
for n in (1, 7, 255, 256, 257, 4099, 70000):
    x = rng.standard_normal(n).astype(np.float32)
    for seed in (0, 12345, 2**63 + 5):
        for p in (0.1, 0.5, 0.9):
            a = fastdrop.dropout(x, p, rng=seed, backend="numba")
            b = fastdrop.dropout(x, p, rng=seed, backend="reference")
            if not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
                bad.append(("dropout", n, seed, p))
            ma = fastdrop.dropout_mask((n,), p, rng=seed, backend="numba")
            mb = fastdrop.dropout_mask((n,), p, rng=seed, backend="reference")
            if not np.array_equal(ma, mb):
                bad.append(("mask", n, seed, p))
# calls that start inside a Philox block (a Generator's offsets), a caller's
# out= (non-temporal stores), a strided view
for seed in (7, 8):
    g1, g2 = fastdrop.Generator(seed), fastdrop.Generator(seed)
    x = rng.standard_normal(300001).astype(np.float32)
    for _ in range(3):
        a = fastdrop.dropout(x, 0.3, rng=g1, backend="numba")
        b = fastdrop.dropout(x, 0.3, rng=g2, backend="reference")
        if not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
            bad.append(("generator", seed))
x = rng.standard_normal(2**20 + 3).astype(np.float32)
out = np.empty_like(x)
fastdrop.dropout(x, 0.5, rng=11, out=out, backend="numba")
if not np.array_equal(out.view(np.uint32),
                      fastdrop.dropout(x, 0.5, rng=11, backend="reference").view(np.uint32)):
    bad.append(("out=",))
x2 = rng.standard_normal((40, 700)).astype(np.float32)[:, 1::3]
if not np.array_equal(fastdrop.dropout(x2, 0.5, rng=4, backend="numba"),
                      fastdrop.dropout(x2, 0.5, rng=4, backend="reference")):
    bad.append(("strided",))
print("BAD", bad)
"""


@needs_avx2_host
def test_numba_philox_lanes_bit_exact_under_the_avx2_environment(tmp_path):
    """The Numba kernels' AVX2-only Philox (fastdrop/_numba/llvm.py's
    philox_blocks, chosen for targets with AVX2 and without AVX-512) against
    the reference, on any x86-64 machine: the AVX2 environment makes Numba
    compile for such a target here too (fresh cache)."""
    pytest.importorskip("numba")
    env = dict(os.environ, **isa_env("avx2"), NUMBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", _LANES_PARITY], capture_output=True, text=True,
                       env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "BAD []"
