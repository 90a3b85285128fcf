"""Config loading: defaults, validation errors, _base_ merge, --set overrides, save round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers.paths import REPO

from pcseg.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
    save_config,
)
from pcseg.methods.erda_u2pl import ERDAWithU2PLNegativesOptions
from pcseg.methods.supervised import SupervisedOptions

# configs/custom/classes_*.yaml: CLASSES.yaml examples (tests/readers/test_custom.py), not configs
ALL_CONFIGS = sorted(
    p for p in (REPO / "configs").rglob("*.yaml") if not p.name.startswith("classes_")
)


def _write(path: Path, obj) -> Path:
    path.write_text(yaml.safe_dump(obj) if not isinstance(obj, str) else obj)
    return path


def test_defaults_and_minimal_file(tmp_path):
    f = _write(tmp_path / "a.yaml", {"train": {"iterations": 5}})
    cfg = load_config(f)
    assert isinstance(cfg, Config)
    assert cfg.train.iterations == 5 and cfg.train.lr == 0.1 and cfg.method.name == "supervised"
    assert cfg.data.voxel_size == 0.05 and isinstance(cfg.method, SupervisedOptions)
    assert cfg.method.model_fields_set == {"name"}  # no option given: all defaults


def test_unknown_key_names_file_and_suggests(tmp_path):
    f = _write(tmp_path / "x.yaml", {"train": {"iterations": 5, "lrr": 0.1}})
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(e.value) == f"{f}: unknown key 'train.lrr' (did you mean 'train.lr'?)"
    f2 = _write(tmp_path / "y.yaml", {"trian": {"iterations": 5}})
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        load_config(f2)


@pytest.mark.parametrize(
    "section,key,value,expect",
    [
        ("train", "lr", "fast", "key 'train.lr' expects float, got str 'fast'"),
        ("train", "iterations", 2.5, "key 'train.iterations' expects int or null, got float 2.5"),
        ("train", "amp", 1, "key 'train.amp' expects bool, got int 1"),
        ("data", "batch_size", "8", "key 'data.batch_size' expects int, got str '8'"),
        (
            "train",
            "optimizer",
            "adam",
            "key 'train.optimizer' must be one of 'sgd', 'adamw', got 'adam' "
            "(did you mean 'adamw'?)",
        ),
    ],
)
def test_wrong_types(tmp_path, section, key, value, expect):
    f = _write(
        tmp_path / "t.yaml",
        {"train": {"iterations": 3}, section: {key: value}}
        if section != "train"
        else {"train": {"iterations": 3, key: value}},
    )
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(e.value) == f"{f}: {expect}"


def test_numeric_string_floats_and_int_to_float(tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string: accepted for float keys
    f = _write(tmp_path / "n.yaml", "train: {iterations: 3, weight_decay: 1e-4, lr: 1}\n")
    cfg = load_config(f)
    assert cfg.train.weight_decay == pytest.approx(1e-4) and isinstance(cfg.train.lr, float)


def test_cross_field_checks(tmp_path):
    with pytest.raises(ConfigError, match="set train.iterations or train.epochs"):
        load_config(_write(tmp_path / "a.yaml", {"train": {"lr": 0.1}}))
    with pytest.raises(ConfigError, match="data.batch_size must be > 0"):
        load_config(
            _write(tmp_path / "b.yaml", {"train": {"epochs": 1}, "data": {"batch_size": 0}})
        )
    with pytest.raises(ConfigError, match="data.label_spec: unknown label spec '2 percent'"):
        load_config(
            _write(
                tmp_path / "c.yaml", {"train": {"epochs": 1}, "data": {"label_spec": "2 percent"}}
            )
        )
    with pytest.raises(
        ConfigError, match="unknown method.name 'erdaa' \\(did you mean 'erda'\\?\\)"
    ):
        load_config(
            _write(tmp_path / "d.yaml", {"train": {"epochs": 1}, "method": {"name": "erdaa"}})
        )
    with pytest.raises(
        ConfigError, match="unknown key 'method.wieght' \\(did you mean 'method.weight'\\?\\)"
    ):
        load_config(
            _write(
                tmp_path / "e.yaml",
                {"train": {"epochs": 1}, "method": {"name": "erda", "wieght": 0.1}},
            )
        )


def test_base_merge_relative_and_delete(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(
        tmp_path / "base.yaml",
        {
            "data": {"root": "data/x", "voxel_size": 0.04, "batch_size": 4},
            "train": {"iterations": 100, "lr": 0.2},
            "method": {"name": "erda", "weight": 0.1, "tau": 0.5},
        },
    )
    _write(tmp_path / "sub" / "mid.yaml", {"_base_": "../base.yaml", "data": {"batch_size": 2}})
    child = _write(
        tmp_path / "sub" / "child.yaml",
        {
            "_base_": ["mid.yaml"],
            "train": {"lr": 0.05},
            "method": {"weight": 0.01},
            "run_dir": "runs/c",
        },
    )
    cfg = load_config(child)
    assert cfg.data.root == "data/x" and cfg.data.voxel_size == 0.04 and cfg.data.batch_size == 2
    assert cfg.train.iterations == 100 and cfg.train.lr == 0.05
    assert cfg.method.name == "erda" and cfg.method.model_fields_set == {"name", "weight", "tau"}
    assert (cfg.method.weight, cfg.method.tau, cfg.method.momentum) == (0.01, 0.5, 0.999)
    assert cfg.run_dir == "runs/c"
    repl = _write(
        tmp_path / "sub" / "repl.yaml",
        {"_base_": "mid.yaml", "method": {"_delete_": True, "name": "supervised"}},
    )
    replaced = load_config(repl).method
    assert isinstance(replaced, SupervisedOptions) and replaced.model_fields_set == {"name"}
    # an error inside a base file names that file
    _write(tmp_path / "bad_base.yaml", {"train": {"iterations": 1, "momentun": 0.9}})
    bad = _write(tmp_path / "bad.yaml", {"_base_": "bad_base.yaml"})
    with pytest.raises(
        ConfigError,
        match=r"bad_base.yaml: unknown key 'train.momentun' \(did you mean 'train.momentum'\?\)",
    ):
        load_config(bad)
    with pytest.raises(ConfigError, match="_base_ file 'nope.yaml' not found"):
        load_config(_write(tmp_path / "nb.yaml", {"_base_": "nope.yaml"}))
    _write(tmp_path / "cyc1.yaml", {"_base_": "cyc2.yaml"})
    _write(tmp_path / "cyc2.yaml", {"_base_": "cyc1.yaml"})
    with pytest.raises(ConfigError, match="_base_ cycle"):
        load_config(tmp_path / "cyc1.yaml")


def test_overrides(tmp_path):
    f = _write(tmp_path / "o.yaml", {"train": {"iterations": 10}})
    cfg = load_config(
        f,
        [
            "train.lr=0.01",
            "method.name=erda",
            "method.weight=0.5",
            "data.max_voxels=null",
            "train.betas=[0.8, 0.9]",
            "run_dir=runs/o",
        ],
    )
    assert cfg.train.lr == 0.01 and cfg.method.name == "erda" and cfg.method.weight == 0.5
    assert cfg.data.max_voxels is None and cfg.train.betas == [0.8, 0.9] and cfg.run_dir == "runs/o"
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}
    with pytest.raises(
        ConfigError,
        match=r"--set train.lrr=1: unknown key 'train.lrr' \(did you mean 'train.lr'\?\)",
    ):
        load_config(f, ["train.lrr=1"])
    with pytest.raises(
        ConfigError, match=r"--set train.lr=abc: key 'train.lr' expects float, got str 'abc'"
    ):
        load_config(f, ["train.lr=abc"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(f, ["train.lr"])


def test_save_round_trip(tmp_path):
    f = _write(
        tmp_path / "r.yaml",
        {
            "train": {"iterations": 7, "weight_decay": 0.001},
            "method": {"name": "erda", "weight": 0.1, "variant": "da"},
            "data": {"augmentations": ["rotate_z", {"name": "scale", "low": 0.8}]},
        },
    )
    cfg = load_config(f, ["train.seed=3"])
    out = tmp_path / "run" / "config.yaml"
    save_config(cfg, out)
    again = load_config(out)
    assert again == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert not list(out.parent.glob(".*.tmp"))  # atomic write leaves no temp file


@pytest.mark.parametrize(
    "path", ALL_CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in ALL_CONFIGS]
)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.train.iterations or cfg.train.epochs
    if path.name != "base.yaml":
        assert cfg.run_dir != "runs/default", f"{path} should name its own run_dir"
        from pcseg.engine.builders import build_method

        method = build_method(cfg, 20, 32)  # every option of the method is accepted
        assert method.name == cfg.method.name


IMAGE_CONFIG_DIRS = {"images", "voc", "cityscapes"}
U2PL_CONFIGS = [
    p
    for p in ALL_CONFIGS
    if p.name.startswith("u2pl")
    and p.relative_to(REPO / "configs").parts[0] not in IMAGE_CONFIG_DIRS
]
U2PL_IMAGE_CONFIGS = [
    p
    for p in ALL_CONFIGS
    if p.name.startswith("u2pl") and p.relative_to(REPO / "configs").parts[0] in IMAGE_CONFIG_DIRS
]


@pytest.mark.parametrize(
    "path", U2PL_CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in U2PL_CONFIGS]
)
def test_shipped_u2pl_configs_use_the_point_cloud_defaults(path):
    # docs/U2PL_DEFAULTS.md: lambda_u 0.1 and a supervised-only warm-up, not the 2D paper's
    # lambda_u 1 without warm-up (which U2PL's Options keep); each file says why
    opts = load_config(path).method
    assert opts.lambda_u == 0.1 and opts.sup_only_iterations > 0, path
    assert "U2PL_DEFAULTS.md" in path.read_text(), f"{path} should give the reason"


@pytest.mark.parametrize(
    "path",
    U2PL_IMAGE_CONFIGS,
    ids=[str(p.relative_to(REPO / "configs")) for p in U2PL_IMAGE_CONFIGS],
)
def test_shipped_image_u2pl_configs_use_the_2d_defaults(path):
    # the official U2PL 2D configs: lambda_u 1, lambda_c 0.1, alpha_0 20, EMA 0.99, negatives
    # ranked 3rd-20th, anchors above 0.3 from the lowest-entropy pixels, 256 anchors, 50
    # negatives, temperature 0.5, a short supervised-only warm-up (none on Cityscapes)
    o = load_config(path).method
    assert (o.lambda_u, o.lambda_c, o.alpha_0, o.ema_decay) == (1.0, 0.1, 20.0, 0.99), path
    assert (o.low_rank, o.high_rank, o.anchor_prob_threshold, o.neg_prob_threshold) == (
        3,
        20,
        0.3,
        1.0,
    )
    assert (o.num_anchors, o.num_negatives, o.temperature) == (256, 50, 0.5)
    assert o.anchor_split == "lowest"
    assert (o.sup_only_iterations == 0) == ("cityscapes" in path.parts)


def test_method_section_validated_through_method_options(tmp_path):
    f = _write(tmp_path / "m.yaml", {"train": {"epochs": 1}, "method": {"name": "erda"}})
    with pytest.raises(
        ConfigError, match=r"--set method.tau=0 \(method 'erda'\): method.tau must be > 0"
    ):
        load_config(f, ["method.tau=0"])
    with pytest.raises(
        ConfigError, match=r"key 'method.variant' must be one of .*'js'.* \(did you mean 'js'\?\)"
    ):
        load_config(f, ["method.variant=jss"])
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'method.erda.wieght' \(did you mean 'method.erda.weight'\?\)",
    ):
        load_config(f, ["method.name=erda_u2pl", "method.erda={wieght: 0.1}"])
    with pytest.raises(ConfigError, match=r"high_rank must be > low_rank"):
        load_config(f, ["method.name=u2pl", "method.low_rank=4", "method.high_rank=4"])
    cfg = load_config(f, ["method.name=erda_u2pl", "method.erda={weight: 0.2}"])
    assert cfg.method.model_fields_set == {"name", "erda"} and cfg.method.erda.weight == 0.2
    assert isinstance(cfg.method, ERDAWithU2PLNegativesOptions)
    # the validated section is the method's own Options, passed to it as is (no flattening)
    from pcseg.engine.builders import build_method

    method = build_method(cfg, 5, 8)
    assert method.options is cfg.method and method.erda.weight == 0.2


@pytest.mark.parametrize(
    "item,expect",
    [
        (
            "data.dataset=s3diss",
            "key 'data.dataset' must be one of 's3dis', 'scannet', 'semantickitti', 'custom', "
            "'images', 'voc', 'cityscapes', got 's3diss' (did you mean 's3dis'?)",
        ),
        ("train.device=gpu", "train.device must be auto | cpu | cuda | cuda:N, got 'gpu'"),
        ("model.planes=[8, 8, 8, 8, 8, 8, 8, 0]", "model.planes[7] must be > 0, got 0"),
        ("train.betas=[0.9, 1.5]", "train.betas[1] must be < 1, got 1.5"),
        (
            "data.augmentations=foo",
            "key 'data.augmentations' expects 'default' | 'default_elastic' or list or null",
        ),
    ],
)
def test_ranges_and_choices_name_the_override(tmp_path, item, expect):
    f = _write(tmp_path / "r.yaml", {"train": {"epochs": 1}})
    with pytest.raises(ConfigError) as e:
        load_config(f, [item])
    assert str(e.value).startswith(f"--set {item}: {expect}")


def test_method_section_is_the_methods_own_options_keyed_on_name(tmp_path):
    from pcseg.methods import METHODS

    f = _write(tmp_path / "m.yaml", {"train": {"epochs": 1}})
    for name, cls in METHODS.items():
        method = load_config(f, [f"method.name={name}"]).method
        assert isinstance(method, cls.Options) and method.name == name
        assert method == load_config(f, [f"method.name={name}"]).method
    cfg = load_config(f, ["method.name=erda", "method.weight=0.3"])
    assert config_to_dict(cfg)["method"] == {
        "name": "erda",
        **cfg.method.model_dump(exclude={"name"}),
    }
    assert config_to_dict(cfg)["method"]["weight"] == 0.3
    with pytest.raises(ConfigError, match=r"--set method.name=1: key 'method.name' expects str"):
        load_config(f, ["method.name=1"])


def test_synthetic_section_is_typed(tmp_path):
    f = _write(tmp_path / "s.yaml", {"train": {"epochs": 1}, "data": {"synthetic": {"seed": 3}}})
    syn = load_config(f).data.synthetic
    assert (syn.seed, syn.num_areas, syn.spacing) == (3, 3, 0.04)  # write_synthetic_s3dis's
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'data.synthetic.room_per_area' \(did you mean "
        r"'data.synthetic.rooms_per_area'\?\)",
    ):
        load_config(f, ["data.synthetic.room_per_area=2"])


def _gpu_recipe(path: Path) -> list[str]:
    """The ``--set`` overrides of the "On a GPU, scale up" comment of a config file."""
    comment = " ".join(
        ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")
    )
    recipe = comment[comment.index("On a GPU, scale up: --set ") :].split("--set ", 1)[1]
    return recipe.split(" (")[0].split()


def test_custom_defaults_finish_on_a_cpu_and_say_how_to_scale_up():
    """configs/custom/ trained MinkUNet34C (37.9 M parameters) for 20,000 iterations: 32.5 s
    an iteration on one CPU thread, about a week. The defaults are now a slim network for a few
    hundred iterations, and the comment's GPU recipe builds the large one."""
    from pcseg.engine.builders import build_model

    base = REPO / "configs" / "custom" / "base.yaml"
    for name in ("supervised", "erda", "recommended", "u2pl"):
        cfg = load_config(REPO / "configs" / "custom" / f"{name}.yaml", ["data.root=x"])
        params = sum(p.numel() for p in build_model(cfg, 4, 5).parameters())
        assert params < 1_000_000 and cfg.train.iterations <= 500, (name, params)
        assert cfg.data.max_voxels <= 20000
    u2pl = load_config(REPO / "configs" / "custom" / "u2pl.yaml", ["data.root=x"])
    assert u2pl.method.sup_only_iterations == u2pl.train.iterations // 4
    text = " ".join(ln.lstrip("# ") for ln in base.read_text().splitlines())
    assert "s per iteration" in text and "train.threads=1" in text
    gpu = load_config(base, ["data.root=x", *_gpu_recipe(base)])
    assert gpu.model.name == "MinkUNet34C" and gpu.train.iterations == 20000
    params = sum(p.numel() for p in build_model(gpu, 4, 7).parameters())
    assert round(params / 1e6, 1) == 37.9  # the number the comment gives
    assert "37.9 M parameters" in text


def test_image_configs_check_models_specs_and_voxel_settings(tmp_path):
    base = {"data": {"dataset": "images"}, "model": {"name": "UNet2D"}, "train": {"epochs": 1}}
    cfg = config_from_dict({**base, "data": {"dataset": "images", "label_spec": "1/8"}})
    assert cfg.data.images.crop_size == 96 and cfg.model.output_stride == 16
    with pytest.raises(ConfigError, match="'MinkUNet14A' is a network for point clouds"):
        config_from_dict({**base, "model": {"name": "MinkUNet14A"}})
    with pytest.raises(ConfigError, match="'UNet2D' is a network for images"):
        config_from_dict({**base, "data": {"dataset": "s3dis"}})
    with pytest.raises(ConfigError, match="model.planes is for point clouds"):
        config_from_dict({**base, "model": {"name": "UNet2D", "planes": [8] * 8}})
    with pytest.raises(ConfigError, match="data.label_spec"):
        config_from_dict({**base, "data": {"dataset": "images", "label_spec": "1/0"}})
    with pytest.raises(ConfigError, match="data.images.test_mode"):
        config_from_dict({**base, "data": {"dataset": "images", "images": {"test_mode": "tiles"}}})
