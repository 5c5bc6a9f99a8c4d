"""Philox4x32-10 and the v1 keep decision: one source for Numba CPU and CUDA.

:func:`make` defines the functions as plain Python and passes each through a
decorator: ``numba.njit`` for the CPU kernels (:mod:`fastdrop._numba.kernels`),
``numba.cuda.jit(device=True)`` for the CUDA kernels (:mod:`fastdrop._cuda`),
or the identity for plain Python (:data:`py`, which the tests check against
the NumPy reference).  Nothing is compiled at import.

All arithmetic is explicitly unsigned: in Numba ``int64 + uint64`` is
float64, so every constant and shift count is a ``np.uint64``/``np.uint32``.

Examples
--------
>>> from fastdrop._numba.philox import py
>>> [hex(w) for w in py.philox4x32_10(0, 0, 0, 0, 0, 0)]
['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
"""

from types import SimpleNamespace

import numpy as np

M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = np.uint64(0x9E3779B9)
W1 = np.uint64(0xBB67AE85)
LO32 = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)
U16 = np.uint32(0xFFFF)


def make(jit):
    """Build the device functions with the decorator ``jit``.

    Returns a namespace with ``philox4x32_10(c0, c1, c2, c3, k0, k1)``,
    ``block_words(b, c2, k0, k1)``, ``lane(w0, w1, w2, w3, l)`` and
    ``keep_decision(j, k0, k1, th, tl)``.
    """

    @jit
    def philox_round(c0, c1, c2, c3, k0, k1):
        p0 = np.uint64(c0) * M0
        p1 = np.uint64(c2) * M1
        return (np.uint32((p1 >> S32) ^ np.uint64(c1) ^ np.uint64(k0)),
                np.uint32(p1 & LO32),
                np.uint32((p0 >> S32) ^ np.uint64(c3) ^ np.uint64(k1)),
                np.uint32(p0 & LO32))

    @jit
    def philox4x32_10(c0, c1, c2, c3, k0, k1):
        """Philox4x32-10 of counter (c0..c3) under key (k0, k1), all uint32."""
        c0 = np.uint32(c0)
        c1 = np.uint32(c1)
        c2 = np.uint32(c2)
        c3 = np.uint32(c3)
        k0 = np.uint64(k0)
        k1 = np.uint64(k1)
        for _ in range(9):
            c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, k0, k1)
            k0 = (k0 + W0) & LO32
            k1 = (k1 + W1) & LO32
        return philox_round(c0, c1, c2, c3, k0, k1)

    @jit
    def block_words(b, c2, k0, k1):
        """Philox of block ``b`` (stream position >> 3); ``c2`` is 0 for the
        16-bit high halves and 1 for the tie-break low halves."""
        b = np.uint64(b)
        return philox4x32_10(np.uint32(b & LO32), np.uint32(b >> S32), np.uint32(c2),
                             np.uint32(0), k0, k1)

    @jit
    def lane(w0, w1, w2, w3, l):
        """16-bit lane ``l`` (0..7): word ``l >> 1``, low half if ``l`` even."""
        l = np.uint32(l)
        wi = l >> np.uint32(1)
        w = w0 if wi == 0 else (w1 if wi == 1 else (w2 if wi == 2 else w3))
        return (np.uint32(w) >> (np.uint32(16) * (l & np.uint32(1)))) & U16

    @jit
    def keep_decision(j, k0, k1, th, tl):
        """True if stream position ``j`` is kept (``th = T >> 16`` may be
        65536; ``tl = T & 0xFFFF``)."""
        j = np.uint64(j)
        b = j >> np.uint64(3)
        l = np.uint32(j & np.uint64(7))
        w0, w1, w2, w3 = block_words(b, 0, k0, k1)
        hi = lane(w0, w1, w2, w3, l)
        if hi != np.uint32(th):
            return hi > np.uint32(th)
        v0, v1, v2, v3 = block_words(b, 1, k0, k1)
        return lane(v0, v1, v2, v3, l) >= np.uint32(tl)

    return SimpleNamespace(philox_round=philox_round, philox4x32_10=philox4x32_10,
                           block_words=block_words, lane=lane,
                           keep_decision=keep_decision)


#: The functions as plain (uncompiled) Python.
py = make(lambda f: f)
