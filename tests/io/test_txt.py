"""pcseg.io.txt: a CSV with a header written back line for line with the new column; a
headerless whitespace file with a column spec."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.io.point_file import PointFileError
from pcseg.io.points import read_points, write_points
from pcseg.io.txt import read_txt

N = 50


def _lines():
    r = np.random.default_rng(0)
    return [
        f"{x:.3f},{y:.3f},{z:.3f},{int(c)}"
        for x, y, z, c in zip(r.random(N) + 1e6, r.random(N), r.random(N), r.integers(0, 3, N))
    ]


def test_csv_header_and_lines_kept_byte_for_byte(tmp_path):
    lines = _lines()
    (tmp_path / "c.csv").write_text("x,y,z,label\n" + "\n".join(lines) + "\n")
    pf = read_points(tmp_path / "c.csv")
    assert pf.fields["label"].dtype == np.int64 and pf.xyz[0, 0] == float(lines[0].split(",")[0])
    out = write_points(pf, tmp_path / "o.csv", {"pred_class": np.arange(N)})
    got = out.read_text().splitlines()
    assert got[0] == "x,y,z,label,pred_class"
    assert got[1] == lines[0] + ",0"  # the original line byte for byte + the new column


def test_headerless_txt_takes_the_column_spec(tmp_path):
    lines = _lines()
    (tmp_path / "d.txt").write_text("\n".join(ln.replace(",", " ") for ln in lines))
    pf = read_points(tmp_path / "d.txt", columns=["x", "y", "z", "cls"])
    assert "cls" in pf.fields
    np.testing.assert_array_equal(pf.fields["cls"], [int(ln.split(",")[3]) for ln in lines])


def test_ragged_and_non_numeric_lines_are_named_with_their_line_number(tmp_path):
    ragged = tmp_path / "ragged.txt"
    # line 1 header, line 3 blank (skipped but counted), line 5 has 3 values instead of 4
    ragged.write_text("x y z i\n0 0 0 1\n\n1 1 1 2\n2 2 2\n3 3 3 4\n")
    with pytest.raises(PointFileError) as e:
        read_txt(ragged)
    assert str(e.value) == f"{ragged} line 5: 3 values, but line 2 has 4"
    bad = tmp_path / "bad.csv"
    bad.write_text("0,0,0\n1,1,1\n2,two,2\n")
    with pytest.raises(PointFileError) as e:
        read_txt(bad)
    assert str(e.value) == f"{bad} line 3: non-numeric value 'two'"
