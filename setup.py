"""Packaging hook (the metadata is in pyproject.toml): ship the repository's ``configs/`` inside
the package as ``pcseg/configs`` (every ``*.yaml``, sub-folders as ``pcseg.configs.<folder>``),
so a wheel or a ``pip install .`` carries the configs that ``pcseg train custom/erda`` finds by
name, while ``configs/`` stays their one copy. pyproject.toml alone cannot map a folder outside
``pcseg/`` into the package, hence this file.
"""

from setuptools import find_namespace_packages, find_packages, setup

CONFIG_PACKAGES = [
    "pcseg.configs",
    *(f"pcseg.configs.{p}" for p in find_namespace_packages(where="configs")),
]

setup(
    packages=[*find_packages(include=["pcseg", "pcseg.*"]), *CONFIG_PACKAGES],
    package_dir={"pcseg.configs": "configs"},
    package_data={p: ["*.yaml"] for p in CONFIG_PACKAGES},
)
