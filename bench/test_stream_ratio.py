"""bench/stream_ratio.py times the stream over the dropout's own arrays (the
same pages: a ratio of kernels, not of page backings); not a timed test."""

import numpy as np

import fastdrop
import stream_ratio


def test_stream_runs_over_the_dropouts_arrays(monkeypatch):
    seen = {"drop": set(), "stream": set()}
    real = fastdrop.dropout

    def dropout(x, p, **kw):
        seen["drop"].add((x.ctypes.data, kw["out"].ctypes.data))
        return real(x, p, **kw)

    def stream(x, out, s):
        seen["stream"].add((x.ctypes.data, out.ctypes.data))
        np.multiply(x, np.float32(s), out=out)

    monkeypatch.setattr(fastdrop, "dropout", dropout)
    monkeypatch.setattr(stream_ratio, "_stream_kernels", lambda: [("numpy", stream)])
    t_drop, name, t_stream = stream_ratio.measure("reference", 4096, 1, samples=3)
    assert name == "numpy" and t_drop > 0 and t_stream > 0
    assert len(seen["drop"]) == 1 and seen["stream"] == seen["drop"]


def test_main_prints_both_thread_counts(capsys):
    stream_ratio.main(["--backend", "reference", "--size", "4096", "--samples", "2"])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    assert lines and all("ratio" in ln and "reference 4096 float32" in ln for ln in lines)
    mib = stream_ratio.LAST["huge_page_mib"]
    assert (mib is None) == ("huge pages" not in lines[0]) and (mib is None or mib >= 0)
