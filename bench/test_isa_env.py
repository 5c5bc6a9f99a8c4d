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


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")
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
