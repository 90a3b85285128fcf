"""pcseg.readers.s3dis.parse_numeric_table on one file holding every kind of damage at
once (each kind alone is in test_s3dis.py): clean stretches parsed in bulk, a stretch whose
bulk parse fails and is read line by line, repaired, skipped and non-finite lines; rows in
file order, each checked against the values written."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pcseg.readers import s3dis


def _damaged_file() -> tuple[bytes, list[list[float] | None]]:
    """Lines of a 6-column file and, per line, the row parse_numeric_table keeps (None:
    skipped / blank / dropped as non-finite)."""
    rng = np.random.default_rng(5)
    good = np.round(rng.uniform(-9, 9, (12, 6)), 2)
    lines: list[bytes] = []
    keep: list[list[float] | None] = []

    def clean(i: int) -> None:
        lines.append(" ".join(f"{v:.2f}" for v in good[i]).encode())
        keep.append([float(v) for v in good[i]])

    for i in range(3):  # a clean stretch (bulk)
        clean(i)
    lines.append(b"1 2 3 185\x00187 9")  # NUL between numbers: repaired
    keep.append([1, 2, 3, 185, 187, 9])
    clean(3)
    lines.append(b"1.2.3 2 3 4 5 6")  # no suspicious byte: its stretch falls back per line
    keep.append(None)
    clean(4)
    lines.append(b"")  # blank: no row
    keep.append(None)
    lines.append(b"1 2 inf 4 5 6")  # numbers after all: non-finite
    keep.append(None)
    clean(5)
    lines.append(b"1 2 3 4 5")  # too few columns: skipped
    keep.append(None)
    for i in range(6, 9):
        clean(i)
    return b"\r\n".join(lines) + b"\r\n", keep


def test_every_damage_in_one_file_keeps_the_good_rows_in_order():
    data, keep = _damaged_file()
    expect = np.array([r for r in keep if r is not None], dtype=np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vals, rep = s3dis.parse_numeric_table(data, 6, "f.txt", nonfinite="drop")
    np.testing.assert_array_equal(vals, expect)
    # 1-based: 4 NUL, 6 "1.2.3", 8 blank, 9 inf (dropped), 11 five values
    assert rep.repaired == [4] and rep.skipped == [6, 9, 11]
    msgs = [str(w.message) for w in caught]
    for line in (4, 6, 11):
        assert any(m.startswith(f"f.txt:{line}: ") for m in msgs), (line, msgs)
    assert any("f.txt" in m and "9" in m and "line" in m for m in msgs[-1:]), msgs


def test_nonfinite_line_is_refused_by_default_naming_its_line():
    data, _ = _damaged_file()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"f\.txt.*\b9\b"):
            s3dis.parse_numeric_table(data, 6, "f.txt")
