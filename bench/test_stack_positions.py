"""bench/stack_positions.py runs: the C shim compiles and moves the stack by
the step asked for, and the report has its lines.  Whether a kernel is slower
at some positions is a measurement (docs/performance.md), not a test."""

import shutil

import pytest

from stack_positions import main

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")


def test_reports_every_position(capsys):
    where, best = main(["--backend", "reference", "--size", "4096", "--step", "1024",
                        "--reps", "1"])
    out = capsys.readouterr().out
    assert "4 stack positions 1024 bytes apart" in out
    assert "position(s) more than 8% slower than the median" in out
    assert sorted(where) == sorted(best) == [0, 1024, 2048, 3072]
    # each step lowers the stack by the bytes asked for
    assert [where[0] - where[s] for s in (0, 1024, 2048, 3072)] == [0, 1024, 2048, 3072]
    assert all(t > 0 for t in best.values())


def test_rejects_a_step_off_16_bytes():
    with pytest.raises(SystemExit):
        main(["--backend", "reference", "--size", "64", "--step", "24"])
