"""Keeps docs/spec.md executable.

The known-answer and golden-value tables of §1 are parsed from the Markdown
and every row is checked against fastdrop.reference, against the decision
rule of §1 written out here, and against every available CPU backend.  A
table that cannot be parsed fails the tests (it never yields zero rows
silently).
"""

import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from fastdrop import reference
from conftest import cpu_backends

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "docs" / "spec.md"

HEADINGS = [
    "## §1 The mask stream, version 1",
    "## §2 Logical index and noise shapes",
    "## §3 Streams and generators",
    "## §4 What a kept or dropped element becomes",
    "## §5 Masks as data",
    "## §6 Backward",
    "## §7 Arguments",
    "## §8 Alpha dropout",
    "## §9 DropPath, spatial and recurrent dropout: noise shapes",
    "## §10 The normal-variate stream, version 1",
    "## §11 Gaussian dropout and Gaussian noise",
]

KAT_HEADER = ["counter", "key", "output"]
GOLDEN_HEADER = ["seed", "offset", "p", "n", "keep bits", "packed"]

# spelled in two parts so that this file does not contain the name it searches for
FORBIDDEN = "DESIGN" + ".md"


class SpecError(Exception):
    """docs/spec.md does not have the expected structure."""


def _spec_text():
    if not SPEC.is_file():
        raise SpecError(f"{SPEC} is missing")
    return SPEC.read_text(encoding="utf-8")


def _section(text, heading):
    """The body of one ``## `` section (up to the next ``## `` heading)."""
    lines = text.splitlines()
    starts = [k for k, line in enumerate(lines) if line.rstrip() == heading]
    if len(starts) != 1:
        raise SpecError(f"heading {heading!r} occurs {len(starts)} times in {SPEC}")
    body = []
    for line in lines[starts[0] + 1:]:
        if line.startswith("## "):
            break
        body.append(line)
    return body


def _cells(line):
    line = line.strip()
    if not (line.startswith("|") and line.endswith("|")):
        raise SpecError(f"not a table row: {line!r}")
    return [c.strip().strip("`").strip() for c in line[1:-1].split("|")]


def _table(lines, header):
    """Rows (lists of cell strings) of the one table in ``lines`` whose header
    row is ``header``."""
    found = []
    k = 0
    while k < len(lines):
        if lines[k].lstrip().startswith("|"):
            block = []
            while k < len(lines) and lines[k].lstrip().startswith("|"):
                block.append(lines[k])
                k += 1
            if [c.lower() for c in _cells(block[0])] == header:
                found.append(block)
        else:
            k += 1
    if len(found) != 1:
        raise SpecError(f"expected one table with header {header} in §1, found {len(found)}")
    block = found[0]
    if len(block) < 2 or not all(re.fullmatch(r":?-{3,}:?", c) for c in _cells(block[1])):
        raise SpecError(f"table {header} has no separator row")
    rows = [_cells(line) for line in block[2:]]
    for row in rows:
        if len(row) != len(header):
            raise SpecError(f"table {header}: row {row} has {len(row)} cells")
    return rows


def _hex_words(cell, count):
    words = cell.split()
    if len(words) != count or not all(re.fullmatch(r"[0-9a-fA-F]{8}", w) for w in words):
        raise SpecError(f"expected {count} 8-digit hex words, got {cell!r}")
    return tuple(int(w, 16) for w in words)


def _int(cell):
    if not re.fullmatch(r"[0-9]+", cell):
        raise SpecError(f"expected a non-negative integer, got {cell!r}")
    return int(cell)


def parse_kat(text):
    rows = _table(_section(text, HEADINGS[0]), KAT_HEADER)
    return [(_hex_words(c, 4), _hex_words(k, 2), _hex_words(o, 4)) for c, k, o in rows]


def parse_golden(text):
    out = []
    for seed, offset, p, n, bits, packed in _table(_section(text, HEADINGS[0]), GOLDEN_HEADER):
        seed, offset, n = _int(seed), _int(offset), _int(n)
        try:
            p = float(p)
        except ValueError:
            raise SpecError(f"p is not a number: {p!r}") from None
        if not re.fullmatch(r"[01]*", bits) or len(bits) != n:
            raise SpecError(f"keep bits {bits!r} are not {n} binary digits")
        if not re.fullmatch(r"[0-9a-f]*", packed) or len(packed) != 2 * math.ceil(n / 8):
            raise SpecError(f"packed {packed!r} is not {math.ceil(n / 8)} bytes of hex")
        out.append((seed, offset, p, n, bits, packed))
    return out


def _parse(parser):
    """(rows, error): parse errors are reported by test_tables_parse."""
    try:
        return parser(_spec_text()), None
    except SpecError as e:
        return [], e


KAT, KAT_ERROR = _parse(parse_kat)
GOLDEN, GOLDEN_ERROR = _parse(parse_golden)


def _kat_id(row):
    return "ctr=" + "-".join(f"{w:08x}" for w in row[0])


def _golden_id(row):
    return f"seed={row[0]},offset={row[1]},p={row[2]},n={row[3]}"


def _keep(bits):
    return np.array([c == "1" for c in bits], dtype=bool)


def _packed(hexstr):
    return np.frombuffer(bytes.fromhex(hexstr), dtype=np.uint8)


# ----------------------------------------------------------------------------
# structure
# ----------------------------------------------------------------------------

def test_headings_present_once_and_in_order():
    lines = [line.rstrip() for line in _spec_text().splitlines()]
    positions = []
    for h in HEADINGS:
        assert lines.count(h) == 1, f"{h!r} must occur exactly once in docs/spec.md"
        positions.append(lines.index(h))
    assert positions == sorted(positions)
    others = [line for line in lines if line.startswith("## ") and line not in HEADINGS]
    assert not others, f"unexpected sections in docs/spec.md: {others}"


def test_tables_parse():
    assert KAT_ERROR is None, f"cannot parse the known-answer table: {KAT_ERROR}"
    assert GOLDEN_ERROR is None, f"cannot parse the golden-values table: {GOLDEN_ERROR}"
    assert len(KAT) == 3, f"expected the 3 Random123 known-answer rows, got {len(KAT)}"
    assert len(GOLDEN) >= 3, f"expected at least 3 golden rows, got {len(GOLDEN)}"


def test_parser_rejects_malformed_tables():
    good = _spec_text()
    assert parse_kat(good) and parse_golden(good)
    bad = good.replace("| fd630123 |", "| fd6301 |")
    with pytest.raises(SpecError):
        parse_golden(bad)
    bad = good.replace("| 6627e8d5 ", "| 6627e8d5x ")
    with pytest.raises(SpecError):
        parse_kat(bad)
    bad = good.replace("| counter | key | output |", "| ctr | key | output |")
    with pytest.raises(SpecError):
        parse_kat(bad)


def _project_files():
    """Files git tracks (or would track) under the checked paths, plus the
    spec and this module."""
    paths = ["fastdrop", "tests", "bench", "docs", "README.md"]
    try:
        res = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--",
             *paths], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    names = {n for n in res.stdout.decode().split("\0") if n}
    names |= {"docs/spec.md", "tests/test_spec.py"}
    files = [ROOT / n for n in sorted(names) if (ROOT / n).is_file()]
    assert len(files) > 20, f"only {len(files)} files found: the search is not working"
    return files


def test_no_file_names_the_design_brief():
    needle = FORBIDDEN.lower().encode()
    hits = [str(f.relative_to(ROOT)) for f in _project_files()
            if needle in f.read_bytes().lower()]
    assert not hits, f"{FORBIDDEN} is named in: {hits}"


# ----------------------------------------------------------------------------
# known answers
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("row", KAT, ids=_kat_id)
def test_kat_reference(row):
    ctr, key, expected = row
    got = reference.philox4x32_10(*ctr, *key)
    assert_array_equal(np.array([int(v) for v in got], dtype=np.uint64),
                       np.array(expected, dtype=np.uint64))


# ----------------------------------------------------------------------------
# golden values
# ----------------------------------------------------------------------------

def _decide(seed, j, T):
    """§1's decision for stream position ``j``, transcribed literally."""
    key = (seed & 0xFFFFFFFF, seed >> 32)
    Th, Tl = T >> 16, T & 0xFFFF
    b, w, s = j >> 3, (j & 7) >> 1, 16 * (j & 1)
    hi = (int(reference.philox4x32_10(b & 0xFFFFFFFF, b >> 32, 0, 0, *key)[w]) >> s) & 0xFFFF
    if hi != Th:
        return hi > Th
    lo = (int(reference.philox4x32_10(b & 0xFFFFFFFF, b >> 32, 1, 0, *key)[w]) >> s) & 0xFFFF
    return lo >= Tl


@pytest.mark.parametrize("row", GOLDEN, ids=_golden_id)
def test_golden_reference(row):
    seed, offset, p, n, bits, packed = row
    T = reference.threshold(p)
    assert T == int(np.rint(np.float64(p) * 2.0**32))
    keep = reference.keep_range(seed, offset, n, T)
    assert_array_equal(keep, _keep(bits))
    assert_array_equal(np.packbits(keep, bitorder="little"), _packed(packed))
    assert_array_equal(np.array([_decide(seed, offset + i, T) for i in range(n)]),
                       _keep(bits))


@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("row", GOLDEN, ids=_golden_id)
def test_golden_every_cpu_backend(row, backend):
    seed, offset, p, n, bits, packed = row
    keep = fastdrop.dropout_mask(n, p, rng=fastdrop.Generator(seed, offset), backend=backend)
    assert_array_equal(keep, _keep(bits))
    pk = fastdrop.dropout_mask(n, p, rng=fastdrop.Generator(seed, offset), packed=True,
                               backend=backend)
    assert_array_equal(pk, _packed(packed))
    if offset == 0:  # an int rng is the seed at offset 0
        assert_array_equal(fastdrop.dropout_mask(n, p, rng=seed, backend=backend),
                           _keep(bits))
    y = fastdrop.dropout(np.ones(n, dtype=np.float32), p,
                         rng=fastdrop.Generator(seed, offset), backend=backend)
    assert_array_equal(y != 0, _keep(bits))


# ----------------------------------------------------------------------------
# §8, §9: the golden values in the text
# ----------------------------------------------------------------------------

def test_alpha_golden_values_of_the_text():
    text = _spec_text()
    a, b, c = fastdrop._plan.alpha_constants(0.5)
    assert f"`a = {a.hex()}`" in text and f"`b = {b.hex()}`" in text and c == -b
    y = fastdrop.alpha_dropout(np.arange(8, dtype=np.float32), 0.5, rng=0)
    assert " ".join(str(v) for v in y.view(np.uint32).tolist()) in " ".join(text.split())
    g = fastdrop.alpha_dropout_backward(np.ones(8, np.float32), 0.5, state=0)
    assert g.tolist()[:2] == [float(np.float32(a)), 0.0] and "0.8864049" in text


def test_drop_path_example_of_the_text():
    y = fastdrop.drop_path(np.ones((8, 2), np.float32), 0.5, rng=0)
    assert y[:, 0].tolist() == [2.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
