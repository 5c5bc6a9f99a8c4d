"""Write fastdrop's p = 0.5 mask stream as raw bits and run dieharder on it.

The keep bits of stream positions ``0 .. nbits - 1`` for one seed, packed
as fastdrop packs masks (``np.packbits(..., bitorder="little")``), are the
input: at p = 0.5 each bit is one fair Bernoulli draw, so the file should be
indistinguishable from uniform random bits.  Needs the ``dieharder`` command
(Debian package ``dieharder``).  The result is recorded in
``docs/rng_quality.md``.

Usage::

    python bench/dieharder_stream.py [--bits 1000000000] [--seed 20261202]
        [--file /tmp/fastdrop_mask.bin] [-- dieharder options, default -a]
"""

import argparse
import shutil
import subprocess
import sys
import time

import fastdrop


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=10**9)
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--file", default="/tmp/fastdrop_mask.bin")
    ap.add_argument("dieharder_args", nargs="*", default=["-a"])
    args = ap.parse_args(argv)
    if shutil.which("dieharder") is None:
        sys.exit("dieharder is not installed (apt-get install dieharder)")
    t0 = time.perf_counter()
    packed = fastdrop.dropout_mask(args.bits, 0.5, rng=args.seed, packed=True)
    packed.tofile(args.file)
    print(f"# fastdrop {fastdrop.__version__}: {args.bits} keep bits, seed {args.seed}, "
          f"offset 0, p = 0.5 -> {args.file} ({packed.size} bytes, "
          f"{time.perf_counter() - t0:.1f} s)", flush=True)
    cmd = ["dieharder", "-g", "201", "-f", args.file] + list(args.dieharder_args)
    print("# " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
