"""pcseg.cli.configs: `pcseg configs` lists every shipped config, by prefix too."""

from __future__ import annotations

from helpers.paths import REPO

from pcseg.cli.main import main


def test_configs_lists_every_shipped_config(capsys):
    from pcseg.config_files import list_configs

    assert main(["configs"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = list_configs()
    assert len(out) == 1 + len(rows)
    for line, (name, comment) in zip(out[1:], rows):
        assert line.split()[0] == name and line.rstrip().endswith(comment)
    assert main(["configs", "custom/"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == sorted(f"custom/{p.stem}" for p in (REPO / "configs" / "custom").glob("*.yaml"))
