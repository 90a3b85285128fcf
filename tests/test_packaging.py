"""environment.yml and pyproject.toml must list the same runtime dependencies."""
import re
import tomllib

import yaml

from conftest import REPO


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_in_sync_with_pyproject():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = {_name(r) for r in py["project"]["dependencies"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip = {_name(d) for d in next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]}
    listed = conda | pip | {"torch" if "pytorch" in conda else ""}
    # open3d-cpu is the CPU wheel of open3d: either satisfies the requirement
    listed |= {"open3d-cpu"} if "open3d" in listed else set()
    missing = runtime - listed
    assert not missing, f"environment.yml lacks runtime deps of pyproject.toml: {sorted(missing)}"


def test_torch_is_never_unpinned_in_makefile():
    make = (REPO / "Makefile").read_text()
    for line in make.splitlines():
        if "pip" in line and "install" in line and "torch" in line:
            assert "torch==2.13.0" in line, line
