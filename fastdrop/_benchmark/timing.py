"""Timing: medians of repeated samples, the inner loop count adapting to
``min_time``, optionally interleaved with a partner call."""

from __future__ import annotations

import math
import statistics
import time

__all__ = ["time_call", "per_call"]


def _noop():
    return None


def time_call(fn, repeat=7, min_time=0.01, max_time=5.0, sync=_noop, partner=None):
    """Median seconds per call of ``fn()``.

    With ``partner`` (a zero-argument callable), every sample of ``fn`` is
    followed by a sample of ``partner`` (calibrated the same way), and the
    result also carries ``partner_median_s``: the two are then measured
    under the same machine conditions, which keeps their ratio honest on a
    shared, noisy machine.

    A calibration call picks the inner loop count ``number`` so that a
    sample lasts at least ``min_time`` (when one call already does, the
    calibration call is the first sample; else back-to-back calls, doubling
    their count until they last a tenth of ``min_time``, set the rate: one
    call alone can take many times the rest -- a 1000-element dropout
    measured 30 us against 0.5 us -- and would leave samples far shorter
    than ``min_time``); then up
    to ``repeat`` samples of ``number`` calls are taken (stopping early,
    after at least three, once ``max_time`` is spent).  ``sync()`` is
    called before each clock read (GPU work is asynchronous).

    Returns
    -------
    dict
        ``median_s``, ``min_s``, ``samples`` (seconds per call),
        ``number`` and ``repeat`` (samples taken).

    Examples
    --------
    >>> r = time_call(lambda: sum(range(100)), repeat=5, min_time=1e-4)
    >>> r["repeat"], r["median_s"] > 0
    (5, True)
    """
    first = _first_call(fn, sync)
    number = 1
    samples = []
    spent = 0.0
    if first < min_time:
        number = _loop_count(_rate(fn, min_time, sync), min_time)
    else:  # a long call: the calibration run is the first sample
        samples.append(first)
        spent = first
    pnumber = 1
    psamples = []
    if partner is not None:
        pfirst = _first_call(partner, sync)
        if pfirst < min_time:
            pnumber = _loop_count(_rate(partner, min_time, sync), min_time)
        if samples:  # keep the samples paired
            psamples.append(pfirst if pnumber == 1 else _per_call(partner, pnumber, sync))
    while len(samples) < max(1, repeat):
        dt = _per_call(fn, number, sync) * number
        spent += dt
        samples.append(dt / number)
        if partner is not None:
            psamples.append(_per_call(partner, pnumber, sync))
        if spent > max_time and len(samples) >= 3:
            break
    out = {"median_s": statistics.median(samples), "min_s": min(samples),
           "samples": samples, "number": number, "repeat": len(samples)}
    if partner is not None:
        out["partner_median_s"] = statistics.median(psamples)
    return out


def _rate(fn, min_time, sync=_noop):
    """Seconds per call of ``fn()``: back-to-back calls, doubling their
    count until they last ``min_time / 10``."""
    number = 1
    while True:
        t = _per_call(fn, number, sync)
        if t * number >= min_time / 10 or number >= 10 ** 6:
            return t
        number *= 2


def _loop_count(first, min_time):
    """Calls per sample so that a sample of calls lasting ``first`` seconds
    each lasts at least ``min_time`` (at most a million)."""
    return int(min(10 ** 6, max(1, math.ceil(min_time / max(first, 1e-8)))))


def _per_call(fn, number, sync=_noop):
    """Seconds per call of ``fn()`` over ``number`` back-to-back calls."""
    sync()
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    sync()
    return (time.perf_counter() - t0) / number


def per_call(fn, budget):
    """Seconds per call of ``fn()``: one call to warm up, back-to-back calls
    to size the loop (:func:`_rate`), then back-to-back calls filling about
    ``budget`` seconds (the sample of ``fastdrop bench-torch`` and
    ``bench/busy_threads.py``)."""
    fn()
    return _per_call(fn, _loop_count(_rate(fn, budget), budget))


def _first_call(fn, sync=_noop):
    """Seconds taken by one call of ``fn()`` (``sync()`` around it)."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0
