"""The environment that makes both CPU backends run a lower ISA on this machine.

``FASTDROP_MAX_ISA`` caps the Cython kernels' ISA leaf (read when the
extension loads).  Numba compiles for the CPU named by ``NUMBA_CPU_NAME`` with
the features in ``NUMBA_CPU_FEATURES``, and when only the name is set it keeps
the host's features: on an AVX-512 machine ``NUMBA_CPU_NAME=haswell`` alone
still gets AVX-512 instructions (measured on an AVX-512 Xeon, 2026-12-04: a
32768-element float32 forward took 0.30 ns per element that way and 0.54 with
the AVX-512 features off).  So for ``avx2`` this sets all three: the Cython
cap, Numba's CPU name (``haswell``) and the host's feature list with every
AVX-512, AVX10 and AMX feature turned off.  Numba reads them when it is first
imported, so they must be in the environment before the process starts::

    eval "$(python bench/isa_env.py avx2)"      # then run any benchmark
    python bench/stream_ratio.py --isa avx2     # or let a script set them

``avx512`` and ``portable`` set only ``FASTDROP_MAX_ISA`` (Numba compiles for
the host CPU as usual).
"""

import os
import shlex
import sys

ISAS = ("avx512", "avx2", "portable")

# host features that an AVX2 CPU without AVX-512 (Haswell to Alder Lake, AMD
# Zen 1-3) lacks; LLVM's names, matched as prefixes
_NOT_AVX2 = ("avx512", "avx10", "amx", "evex512")


def numba_avx2_features():
    """The host CPU's LLVM feature string with AVX-512, AVX10 and AMX off.

    Needs llvmlite (Numba's LLVM binding); ``bench/test_isa_env.py``
    checks that Numba compiles and runs with the result.
    """
    from llvmlite import binding as ll

    feats = ll.get_host_cpu_features()
    out = []
    for name, on in sorted(feats.items()):
        if name.startswith(_NOT_AVX2):
            out.append("-" + name)
        elif on:
            out.append("+" + name)
    return ",".join(out)


def isa_env(isa):
    """Environment variables (a dict) for running ``isa`` on this machine.

    Without Numba installed, ``avx2`` sets only ``FASTDROP_MAX_ISA``.

    >>> isa_env("portable")
    {'FASTDROP_MAX_ISA': 'portable'}
    >>> isa_env("avx2")["FASTDROP_MAX_ISA"]
    'avx2'
    """
    if isa not in ISAS:
        raise ValueError(f"isa must be one of {', '.join(ISAS)}, got {isa!r}")
    env = {"FASTDROP_MAX_ISA": isa}
    if isa == "avx2":
        try:
            features = numba_avx2_features()
        except ImportError:  # no Numba: only the Cython cap matters
            return env
        env["NUMBA_CPU_NAME"] = "haswell"
        env["NUMBA_CPU_FEATURES"] = features
    return env


def rerun_under(isa, script, argv=None):
    """Replace this process by ``script`` run again with ``argv`` (default:
    this process's arguments) under :func:`isa_env` ``(isa)``, unless ``isa``
    is None or this process already runs under it (the scripts' ``--isa``:
    Numba reads its target when first imported, so it must be set before the
    process starts)."""
    if isa is None or os.environ.get("_FASTDROP_ISA_ENV") == isa:
        return
    env = dict(os.environ, _FASTDROP_ISA_ENV=isa, **isa_env(isa))
    rest = sys.argv[1:] if argv is None else list(argv)
    os.execve(sys.executable, [sys.executable, os.path.abspath(script), *rest], env)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in ISAS:
        sys.exit(f"usage: python bench/isa_env.py {{{','.join(ISAS)}}}")
    for k, v in isa_env(argv[0]).items():
        print(f"export {k}={shlex.quote(v)}")


if __name__ == "__main__":
    main()
