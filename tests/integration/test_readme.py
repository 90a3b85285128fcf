"""The README's "Your own scans" commands, run as a user types them.

The class file is the README's own YAML block; the commands are the lines of the fenced bash
block announced as tested (parsed from README.md, so the README and this test cannot drift).
They run in an empty working directory where the test has written small LAS files at the
paths the commands name (``--raw`` of prepare, the inputs of predict). The only additions:
``train.iterations=2`` and a slim network (``model.planes`` / ``model.init_dim``) in the
``--set`` of train and test, so the whole path takes seconds.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pcseg.cli.main import build_parser

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
#: appended to the ``--set`` of pcseg train / test: seconds instead of hours
FAST = ["train.iterations=2", "model.planes=[8,8,8,8,8,8,8,8]", "model.init_dim=8"]


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _blocks(text: str, lang: str) -> list[tuple[int, str]]:
    """``(offset, body)`` of every fenced block of ``lang``."""
    return [(m.start(), m.group(1)) for m in re.finditer(rf"```{lang}\n(.*?)```", text, re.S)]


def readme_own_scans() -> tuple[dict, list[list[str]]]:
    """The CLASSES.yaml of the section and the argv of each tested ``pcseg`` command."""
    sec = _section(README.read_text(), "Your own scans")
    classes = yaml.safe_load(_blocks(sec, "yaml")[0][1])
    marker = sec.index("tests/integration/test_readme.py")
    body = next(b for off, b in _blocks(sec, "bash") if off > marker)
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            assert argv[0] == "pcseg", line
            commands.append(argv[1:])
    return classes, commands


def test_readme_is_a_short_guide_with_one_own_scans_section():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert len(re.findall(r"^#+ .*your own scans", text, re.M | re.I)) == 1
    classes, commands = readme_own_scans()
    assert [c[0] for c in commands] == ["prepare", "train", "test", "predict"]
    assert classes["label_field"] == "classification" and classes["voxel_size"] > 0


def _write_las(path: Path, n: int, seed: int, classes: dict) -> None:
    """A small airborne-like tile: five stripes of the README's ASPRS codes at their heights,
    intensity by class (the README's feature), plus a few unclassified (ignored) points."""
    import laspy

    rng = np.random.default_rng(seed)
    codes = np.array(sorted(classes["map"]), dtype=np.uint8)
    xy = rng.random((n, 2)) * 30.0
    code = codes[(xy[:, 0] // 6).astype(int) % len(codes)]
    height = {2: 0.0, 3: 0.3, 4: 1.5, 5: 6.0, 6: 8.0}
    z = np.array([height.get(int(c), 1.0) for c in code]) + rng.random(n) * 0.3
    code[rng.random(n) < 0.05] = classes["ignore"][1]
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = [0.01, 0.01, 0.01]
    header.offsets = [500000.0, 4000000.0, 0.0]
    las = laspy.LasData(header)
    las.x = xy[:, 0] + 500000.0
    las.y = xy[:, 1] + 4000000.0
    las.z = z
    las.classification = code
    las.intensity = (code.astype(np.int64) * 1000 + rng.integers(0, 500, n)).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    las.write(str(path))


def _fast(argv: list[str]) -> list[str]:
    """``argv`` with FAST appended to its ``--set`` values (``--set`` is its last option)."""
    if "--set" not in argv:
        return [*argv, "--set", *FAST]
    assert all(not a.startswith("--") for a in argv[argv.index("--set") + 1 :]), argv
    return [*argv, *FAST]


def test_readme_own_scans_commands_work(tmp_path):
    import laspy

    classes, commands = readme_own_scans()
    prepare, train, test, predict = commands
    # the paths the commands name, as pcseg's own parser reads them
    prep = build_parser().parse_args(prepare)
    pred = build_parser().parse_args(predict)
    (tmp_path / prep.classes).write_text(yaml.safe_dump(classes))
    _write_las(tmp_path / prep.raw / "tile_a.las", 2500, 0, classes)
    _write_las(tmp_path / prep.raw / "tile_b.las", 2500, 1, classes)
    assert len(pred.inputs) == 1, predict
    new_scan = tmp_path / pred.inputs[0] / "new.las"
    _write_las(new_scan, 1500, 2, classes)

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for argv in (prepare, _fast(train), _fast(test), predict):
        r = subprocess.run(
            [sys.executable, "-m", "pcseg", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, f"pcseg {shlex.join(argv)}\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
        # not a terminal: progress as whole lines, no carriage-return redraws
        assert "\r" not in r.stderr, r.stderr[-500:]

    assert (tmp_path / prep.out / "meta.json").is_file()
    ckpt = tmp_path / pred.checkpoint
    run = ckpt.parents[1]
    assert ckpt.is_file() and (run / "test" / "metrics.json").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["iterations"] == 2
    out = laspy.read(str(tmp_path / pred.out / "new.las"))
    src = laspy.read(str(new_scan))
    assert len(out.points) == len(src.points) == 1500
    np.testing.assert_array_equal(out.x, src.x)
    pred = np.asarray(out["pred_class"])
    assert pred.min() >= 0 and pred.max() < len(classes["names"])
    # classification written back through the reverse of the README's map
    code_of = {classes["names"].index(name): code for code, name in classes["map"].items()}
    np.testing.assert_array_equal(np.asarray(out.classification), [code_of[int(p)] for p in pred])
