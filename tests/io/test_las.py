"""pcseg.io.las: LAS/LAZ written by laspy read with every dimension in its dtype and float64
coordinates; a LAZ without a backend says what to install."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.io import las as las_io
from pcseg.io.point_file import PointFileError
from pcseg.io.points import read_points

N = 50


def _rng():
    return np.random.default_rng(0)


def _las(path, offsets=(2_445_000.0, 2_445_000.0, 100.0), fmt=3, n=N):
    import laspy

    r = _rng()
    h = laspy.LasHeader(point_format=fmt, version="1.2")
    h.scales = np.array([0.01, 0.01, 0.01])
    h.offsets = np.asarray(offsets)
    h.add_extra_dim(laspy.ExtraBytesParams(name="amplitude", type=np.float32))
    las = laspy.LasData(h)
    las.x = offsets[0] + r.random(n) * 500
    las.y = offsets[1] + r.random(n) * 500
    las.z = offsets[2] + r.random(n) * 20
    las.intensity = r.integers(0, 65535, n)
    las.return_number = r.integers(1, 3, n)
    las.number_of_returns = np.full(n, 3)
    las.classification = r.choice([1, 2, 5, 6], n)
    las.red = r.integers(0, 65535, n)
    las.green = r.integers(0, 65535, n)
    las.blue = r.integers(0, 65535, n)
    las.amplitude = r.random(n).astype(np.float32)
    las.write(str(path))
    return laspy.read(str(path))


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_laz_fields_and_float64_coordinates(tmp_path, suffix):
    ref = _las(tmp_path / f"a{suffix}")
    pf = read_points(tmp_path / f"a{suffix}")
    assert pf.format == "las"
    assert pf.xyz.dtype == np.float64
    np.testing.assert_array_equal(pf.xyz[:, 0], np.asarray(ref.x))
    np.testing.assert_array_equal(pf.fields["X"], np.asarray(ref.X))
    for name in ref.point_format.dimension_names:
        assert pf.fields[name].dtype == np.asarray(ref[name]).dtype, name
        np.testing.assert_array_equal(pf.fields[name], np.asarray(ref[name]))
    assert pf.fields["intensity"].dtype == np.uint16
    assert pf.fields["amplitude"].dtype == np.float32


def test_laz_without_backend_says_what_to_install(tmp_path, monkeypatch):
    _las(tmp_path / "a.laz")
    monkeypatch.setattr(las_io, "laz_backend_available", lambda: False)
    with pytest.raises(PointFileError) as e:
        read_points(tmp_path / "a.laz")
    assert "a.laz" in str(e.value) and "lazrs" in str(e.value)


#: a WKT1 compound CRS as LAS files carry it: a projected CRS in international feet (its
#: GEOGCS UNIT is an angle, not the horizontal unit) and a vertical CRS in US survey feet
WKT_FEET = (
    'COMPD_CS["NAD83 / Ohio North (ft) + NAVD88 height (ftUS)",'
    'PROJCS["NAD83 / Ohio North (ft)",GEOGCS["NAD83",DATUM["North_American_Datum_1983",'
    'SPHEROID["GRS 1980",6378137,298.257222101]],PRIMEM["Greenwich",0],'
    'UNIT["degree",0.0174532925199433]],PROJECTION["Lambert_Conformal_Conic_2SP"],'
    'PARAMETER["standard_parallel_1",41.7],UNIT["foot",0.3048,AUTHORITY["EPSG","9002"]],'
    'AXIS["Easting",EAST],AXIS["Northing",NORTH]],'
    'VERT_CS["NAVD88 height (ftUS)",VERT_DATUM["North American Vertical Datum 1988",2005],'
    'UNIT["US survey foot",0.304800609601219,AUTHORITY["EPSG","9003"]],AXIS["Up",UP]]]'
)
#: WKT2: the length unit inside the CS axes
WKT2_METRE = (
    'PROJCRS["WGS 84 / UTM zone 32N",BASEGEOGCRS["WGS 84",DATUM["World Geodetic System 1984",'
    'ELLIPSOID["WGS 84",6378137,298.257223563,LENGTHUNIT["metre",1]]],'
    'ANGLEUNIT["degree",0.0174532925199433]],CONVERSION["UTM zone 32N",METHOD["Transverse '
    'Mercator"]],CS[Cartesian,2],AXIS["(E)",east,ORDER[1],LENGTHUNIT["metre",1]],'
    'AXIS["(N)",north,ORDER[2],LENGTHUNIT["metre",1]],ID["EPSG",32632]]'
)


def _with_vlr(path, vlr):
    import laspy

    h = laspy.LasHeader(point_format=3, version="1.2")
    h.scales = np.array([0.01, 0.01, 0.01])
    h.vlrs.append(vlr)
    las = laspy.LasData(h)
    las.x, las.y, las.z = np.arange(5.0), np.arange(5.0), np.arange(5.0)
    las.write(str(path))
    return path


def test_units_from_the_wkt_vlr_and_geotiff_keys(tmp_path):
    from laspy.vlrs.known import GeoKeyDirectoryVlr, GeoKeyEntryStruct, WktCoordinateSystemVlr

    got = las_io.read_las_crs(_with_vlr(tmp_path / "ft.las", WktCoordinateSystemVlr(WKT_FEET)))
    assert got["source"] == "LAS WKT" and not got["geographic"]
    assert got["crs"] == "NAD83 / Ohio North (ft) + NAVD88 height (ftUS)"
    assert got["horizontal"] == ("foot", 0.3048)
    assert got["vertical"][0] == "US survey foot"
    assert abs(got["vertical"][1] - 1200 / 3937) < 1e-12
    wkt2 = las_io.wkt_units(WKT2_METRE)
    assert wkt2["horizontal"] == ("metre", 1.0) and wkt2["vertical"] is None
    geo = las_io.wkt_units('GEOGCS["WGS 84",DATUM["x",SPHEROID["a",1,2]],UNIT["degree",0.01]]')
    assert geo["geographic"] and geo["horizontal"] is None

    vlr = GeoKeyDirectoryVlr()
    vlr.geo_keys_header.key_directory_version = 1
    entries = []
    for key, value in [(1024, 1), (3072, 2263), (3076, 9003), (4099, 9002)]:
        e = GeoKeyEntryStruct()
        e.id, e.tiff_tag_location, e.count, e.value_offset = key, 0, 1, value
        entries.append(e)
    vlr.geo_keys = entries
    vlr.geo_keys_header.number_of_keys = len(entries)
    got = las_io.read_las_crs(_with_vlr(tmp_path / "gt.las", vlr))
    assert got["source"] == "LAS GeoTIFF keys" and got["crs"] == "EPSG:2263"
    assert got["horizontal"] == ("US survey foot", 1200 / 3937)
    assert got["vertical"] == ("foot", 0.3048)
    assert las_io.las_crs(_las(tmp_path / "none.las").header) is None
    with pytest.raises(ValueError, match="unclosed"):
        las_io.parse_wkt('PROJCS["a",UNIT["foot",0.3048]')


# ------------------------------------------------------------------ hostile header (issue 25)
def _patched(tmp_path, name, version, patches):
    """A small laspy-written LAS whose header bytes at ``patches`` ({offset: (fmt, value or
    value(file size))}) are overwritten; returns (path, original header fields, size)."""
    import struct

    import laspy

    h = laspy.LasHeader(point_format=3, version=version)
    las = laspy.LasData(h)
    las.x, las.y, las.z = np.arange(400.0), np.arange(400.0), np.arange(400.0)
    path = tmp_path / name
    las.write(str(path))
    raw = bytearray(path.read_bytes())
    orig = dict(zip(("header_size", "offset", "n_vlrs"), struct.unpack_from("<HII", raw, 94)))
    for off, (fmt, value) in patches.items():
        struct.pack_into(fmt, raw, off, value(len(raw)) if callable(value) else value)
    path.write_bytes(bytes(raw))
    return path, orig, len(raw)


def _no_laspy_reads(monkeypatch):
    import laspy

    def boom(*a, **k):
        raise AssertionError("laspy was asked to read a hostile header")

    monkeypatch.setattr(laspy, "read", boom)
    monkeypatch.setattr(laspy, "open", boom)


def test_hostile_vlr_count_fails_before_laspy_reads(tmp_path, monkeypatch):
    path, orig, size = _patched(tmp_path, "vlrs.las", "1.2", {100: ("<I", 1_069_128_089)})
    assert 10_000 < size < 20_000  # the 14 KB file of the issue
    _no_laspy_reads(monkeypatch)
    allowed = (orig["offset"] - orig["header_size"]) // 54
    for reader in (las_io.read_las, read_points):
        with pytest.raises(PointFileError) as e:
            reader(path)
        msg = str(e.value)
        assert str(path) in msg and "number of VLRs" in msg and "1,069,128,089" in msg
        assert f"at most {allowed:,}" in msg and f"{size:,} bytes" in msg


@pytest.mark.parametrize(
    ("version", "patch", "field", "claimed"),
    [
        ("1.2", {107: ("<I", 3_000_000_000)}, "number of point records", "3,000,000,000"),
        ("1.4", {247: ("<Q", 10**12)}, "number of point records", "1,000,000,000,000"),
        ("1.2", {96: ("<I", 4_000_000_000)}, "offset to point data", "4,000,000,000"),
        ("1.4", {235: ("<Q", lambda n: n - 10), 243: ("<I", 2**31)}, "EVLRs", "2,147,483,648"),
        ("1.4", {235: ("<Q", 2**40), 243: ("<I", 1)}, "start of the first EVLR", "1,099,511,"),
    ],
)
def test_hostile_header_fields_are_named(tmp_path, monkeypatch, version, patch, field, claimed):
    path, _, _ = _patched(tmp_path, "h.las", version, patch)
    _no_laspy_reads(monkeypatch)
    with pytest.raises(PointFileError, match=field) as e:
        las_io.read_las(path)
    assert claimed in str(e.value) and str(path) in str(e.value)


def test_sane_header_passes_the_check(tmp_path):
    for version in ("1.2", "1.4"):
        path, _, _ = _patched(tmp_path, f"ok{version}.las", version, {})
        las_io.check_las_header(path)
        assert len(las_io.read_las(path).xyz) == 400
    not_las = tmp_path / "x.las"
    not_las.write_bytes(b"hello")
    with pytest.raises(PointFileError, match="not a readable LAS file: 5 bytes"):
        las_io.read_las(not_las)


def test_a_laspy_error_without_text_still_gives_a_reason(tmp_path, monkeypatch):
    import laspy

    path, _, _ = _patched(tmp_path, "ok.las", "1.2", {})

    def empty(*a, **k):
        raise laspy.errors.LaspyException("")

    monkeypatch.setattr(laspy, "read", empty)
    with pytest.raises(PointFileError) as e:
        las_io.read_las(path)
    assert str(e.value) == f"{path}: not a readable LAS file: LaspyException"


def test_a_copc_file_is_written_back_as_a_plain_laz(tmp_path):
    """laspy reads COPC but cannot write its VLRs: the labelled copy (same name) drops them,
    every point and other VLR kept."""
    import laspy
    from laspy.copc import CopcInfoVlr
    from laspy.vlrs.known import WktCoordinateSystemVlr

    from pcseg.io.points import output_path, write_points

    path, _, _ = _patched(tmp_path, "tile.copc.laz", "1.4", {})
    pf = las_io.read_las(path)
    pf.native["las"].header.vlrs.append(CopcInfoVlr())
    pf.native["las"].header.vlrs.append(WktCoordinateSystemVlr('LOCAL_CS["x"]'))
    out = output_path(pf, tmp_path / "out")
    assert out.name == "tile.copc.laz"
    write_points(pf, out, {"pred_class": np.ones(400, np.uint8)})
    back = laspy.read(str(out))
    assert [v.user_id for v in back.header.vlrs] == ["LASF_Projection", "LASF_Spec"]  # + extra dims
    np.testing.assert_array_equal(back.X, pf.native["las"].X)
    assert np.asarray(back.pred_class).tolist() == [1] * 400
