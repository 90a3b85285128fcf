"""pcseg.io.point_file: the one input-file listing skips hidden files and folders,
temporaries (the leftovers of a killed run) and processed folders, and keeps every other
supported file."""

from __future__ import annotations

from pcseg.io.point_file import list_point_files


def test_listing_skips_hidden_and_temporary_names(tmp_path):
    keep = ["a.las", "sub/b.PLY", "sub/deeper/c.bin", "d.npy"]
    skip = [
        ".tile_00.stream.ab12cd34/00000.bin",  # a killed streamed predict's chunks
        ".tile_00.stream.ab12cd34/res_0.bin",
        ".a.las.x1y2z3w4.las",  # an atomic-write temporary
        "scenes/.tile_00.npz.k3j4h5g6.tmp",
        "sub/.hidden/e.las",
        ".DS_Store",
        "f.las.tmp",
        "g.TMP",
        "notes.json",  # not a point-file suffix
    ]
    for rel in keep + skip:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "folder.las").mkdir()  # a folder with a point suffix is no file
    got = [p.relative_to(tmp_path).as_posix() for p in list_point_files(tmp_path)]
    assert got == sorted(keep)


def test_listing_skips_processed_folders_below_the_root(tmp_path):
    """A `pcseg annotate` working folder or a `pcseg prepare --out` kept among the scans
    (meta.json + scenes/) holds pcseg's own .npz / .npy files and a link to the scan itself:
    listing it made `pcseg predict DIR` write two a.las and `prepare --raw DIR` read the
    scenes as scans. A folder with only one of the two markers is listed as usual."""
    keep = ["a.las", "b.las", "half/meta.json", "half/x.npy", "other/scenes/s.npz"]
    skip = [
        "annotations/a/meta.json",
        "annotations/a/scenes/a.npz",
        "annotations/a/labels/given/a.npy",
        "annotations/a/raw/a.las",
        "a.las.pcseg/meta.json",
        "a.las.pcseg/scenes/a.npz",
    ]
    for rel in keep + skip:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in list_point_files(tmp_path)]
    assert got == sorted(k for k in keep if not k.endswith(".json"))
    # the processed folder itself as the root is listed (prepare reads WORK/raw, not WORK)
    inner = [p.name for p in list_point_files(tmp_path / "annotations" / "a")]
    assert sorted(inner) == ["a.las", "a.npy", "a.npz"]


def test_a_failure_reason_is_never_empty():
    from pcseg.io.point_file import reason

    assert reason(ValueError("bad\n  header")) == "bad header"
    assert reason(ValueError("")) == "ValueError"
    assert reason(OSError()) == "OSError"
