"""Run dieharder on fastdrop's p = 0.5 mask stream.

At p = 0.5 each keep bit is one fair Bernoulli draw, so the packed mask
(``np.packbits(..., bitorder="little")``, as fastdrop packs masks) of stream
positions ``0, 1, 2, ...`` for one seed should be indistinguishable from
uniform random bits.  Needs the ``dieharder`` command (Debian package
``dieharder``).  The results are recorded in ``docs/rng_quality.md``.

Two ways to feed it:

``file`` (default)
    the first ``--bits`` bits (default 10**9) written to a file and read with
    ``-g 201``; dieharder rewinds the file when a test needs more bits than
    it holds (the full ``-a`` run reads it hundreds of times over), and
    re-read bits are not independent, so the late tests judge repetition;
``stream``
    the stream piped into ``-g 200`` as long as dieharder reads, nothing
    repeated (fastdrop positions 0 .. 2**64 - 1).

``--source pcg64`` feeds NumPy's PCG64 bits the same way, as a control.

Usage::

    python bench/dieharder_stream.py [--feed file|stream] [--source fastdrop|pcg64]
        [--bits 1000000000] [--seed 20261202] [-- dieharder options, default -a]
"""

import argparse
import shutil
import subprocess
import sys
import time

import numpy as np

import fastdrop

_CHUNK_BITS = 1 << 27  # 16 MiB of mask per write in stream mode


def _blocks(source, seed, nbits=None):
    """Yields packed bytes: fastdrop's keep bits at consecutive stream
    positions (one Generator), or PCG64 bytes."""
    g = fastdrop.Generator(seed)
    rng = np.random.Generator(np.random.PCG64(seed))
    done = 0
    while nbits is None or done < nbits:
        n = _CHUNK_BITS if nbits is None else min(_CHUNK_BITS, nbits - done)
        if source == "fastdrop":
            yield fastdrop.dropout_mask(n, 0.5, rng=g, packed=True)
        else:
            yield rng.integers(0, 256, size=(n + 7) // 8, dtype=np.uint8)
        done += n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feed", choices=["file", "stream"], default="file")
    ap.add_argument("--source", choices=["fastdrop", "pcg64"], default="fastdrop")
    ap.add_argument("--bits", type=int, default=10**9)
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--file", default="/tmp/fastdrop_mask.bin")
    ap.add_argument("dieharder_args", nargs="*", default=["-a"])
    args = ap.parse_args(argv)
    if args.bits % 8 or args.bits <= 0:
        ap.error("--bits must be a positive multiple of 8")
    if shutil.which("dieharder") is None:
        sys.exit("dieharder is not installed (apt-get install dieharder)")
    what = (f"{args.source} bits, seed {args.seed}"
            + (", p = 0.5 keep bits from offset 0" if args.source == "fastdrop" else ""))
    if args.feed == "file":
        t0 = time.perf_counter()
        with open(args.file, "wb") as f:
            for block in _blocks(args.source, args.seed, args.bits):
                block.tofile(f)
        print(f"# fastdrop {fastdrop.__version__}: {args.bits} {what} -> {args.file} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
        cmd = ["dieharder", "-g", "201", "-f", args.file] + list(args.dieharder_args)
        print("# " + " ".join(cmd), flush=True)
        return subprocess.call(cmd)
    cmd = ["dieharder", "-g", "200"] + list(args.dieharder_args)
    print(f"# fastdrop {fastdrop.__version__}: {what}, streamed\n# " + " ".join(cmd),
          flush=True)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    try:
        for block in _blocks(args.source, args.seed):
            proc.stdin.write(block.tobytes())
    except (BrokenPipeError, OSError):
        pass  # dieharder finished and closed its input
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
