"""pcseg as pip ships it: a wheel built with ``python -m build`` installs into a fresh venv
with its configs, and ``pcseg --help`` / ``pcseg configs`` / a config by name work from
there, outside the checkout; an editable install (what ``make install`` does) finds the same
configs in the checkout.

Offline and fast: the venv has no pip of its own (the running interpreter's pip installs into
it with ``--no-index --no-deps``), and a ``.pth`` line makes the running environment's
site-packages visible for the dependencies (torch, numpy, ...) only; pcseg itself must come
from the wheel (checked: ``pcseg.__file__`` lies in the venv). The source tree is copied
first, so the build leaves no ``build/`` or ``*.egg-info`` in the checkout.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("build") is None,
        reason="the 'build' package is not installed (pip install build, or the dev extra)",
    ),
]

#: prints where pcseg and its configs come from, then loads a shipped config by name
_PROBE = """
import pcseg
from pcseg.config import load_config
from pcseg.config_files import shipped_config_dir
cfg = load_config("custom/erda", ["data.root=somewhere"])
print(pcseg.__file__)
print(shipped_config_dir())
print(cfg.method.name, cfg.data.dataset, cfg.data.label_spec, cfg.data.root)
"""


def _copy_source(dst: Path) -> Path:
    """The files a build reads (metadata, setup.py, README, the package, configs/)."""
    dst.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, dst / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pcseg", "configs"):
        shutil.copytree(REPO / name, dst / name, ignore=skip)
    return dst


def _venv(path: Path) -> tuple[Path, dict[str, str]]:
    """A venv without pip whose only extra path is this environment's site-packages
    (appended after the venv's own, so what is installed in the venv wins)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    py = path / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "_pcseg_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return py, env


def _pip_install(py: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps"]
        + ["--no-index", "--no-build-isolation", *args],
        check=True,
        env=env,
        timeout=300,
    )


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def _check_installed(py: Path, env: dict[str, str], cwd: Path, configs: Path) -> Path:
    """``pcseg --help``, ``pcseg configs`` and a config by name, run from ``cwd``; returns
    ``pcseg.__file__`` as the installed package reports it."""
    pcseg = py.parent / "pcseg"
    assert "configs" in _run([str(pcseg), "--help"], env, cwd)
    listing = _run([str(pcseg), "configs"], env, cwd).splitlines()
    assert listing[0] == f"configs in {configs}:"
    names = [line.split()[0] for line in listing[1:]]
    expected = sorted(
        p.relative_to(REPO / "configs").with_suffix("").as_posix()
        for p in (REPO / "configs").rglob("*.yaml")
    )
    assert names == expected
    where, shipped, loaded = _run([str(py), "-c", _PROBE], env, cwd).splitlines()
    assert Path(shipped) == configs
    assert loaded == "erda custom given somewhere"  # custom/base.yaml reached through _base_
    return Path(where)


def test_wheel_installs_in_a_fresh_venv_with_its_configs(tmp_path):
    src = _copy_source(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=src,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("pcseg-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = sorted(n for n in z.namelist() if n.startswith("pcseg/configs/"))
    in_repo = sorted(
        f"pcseg/configs/{p.relative_to(REPO / 'configs').as_posix()}"
        for p in (REPO / "configs").rglob("*.yaml")
    )
    assert shipped == in_repo

    py, env = _venv(tmp_path / "venv")
    _pip_install(py, env, str(wheel))
    shutil.rmtree(src)  # nothing may still read the source tree
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    where = _check_installed(py, env, tmp_path, site / "pcseg" / "configs")
    assert where == site / "pcseg" / "__init__.py"


def test_editable_install_reads_the_checkout_configs(tmp_path):
    src = _copy_source(tmp_path / "src")
    py, env = _venv(tmp_path / "venv")
    _pip_install(py, env, "-e", str(src))
    where = _check_installed(py, env, tmp_path, src / "configs")
    assert where == src / "pcseg" / "__init__.py"
