"""pcseg.workflows.budget: the label-budget study (runs reused, results accumulated, fractions
and table checked by hand), and the README budget tables drawn from the shipped json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.paths import REPO

from pcseg.data import processed
from pcseg.workflows.budget import (
    choose_on_validation,
    final_validation_miou,
    format_budget_matrix,
    format_budget_table,
    format_pq_table,
    format_validation_matrix,
    labelled_fraction,
    merge_budget_results,
    select_budget_results,
)


def test_labelled_fraction_counts_label_files(prepared_rooms):
    ids = processed.split_scenes(prepared_rooms, "Area_1")
    n = sum(processed.read_scene_info(prepared_rooms, s)["num_points"] for s in ids)
    k = sum(len(processed.read_labels(prepared_rooms, "1%", s)) for s in ids)
    full = sum((processed.read_scene(prepared_rooms, s).semantic >= 0).sum() for s in ids)
    assert labelled_fraction(prepared_rooms, "1%", "Area_1") == pytest.approx(k / n)
    assert labelled_fraction(prepared_rooms, "full", "Area_1") == pytest.approx(full / n)
    both = labelled_fraction(prepared_rooms, "1%", "Area_1+Area_2")  # "+" joins splits
    assert 0 < both < 1 and both != labelled_fraction(prepared_rooms, "1%", "Area_1")


def test_budget_table_marks_nothing_when_every_budget_is_scored_alike():
    run = {"seed": 0, "miou": 0.5}
    res = {
        "budgets": {
            "1%": {"fraction": 0.01, "score": "all", "methods": {"supervised": [run]}},
            "full": {"fraction": 1.0, "score": "all", "methods": {"supervised": [run]}},
        }
    }
    table = format_budget_table(res)
    assert "†" not in table
    assert "| 1% | 1 % | supervised | 50.0 ± 0.0 | 50.0 |" in table


def test_budget_matrix_one_row_per_budget_best_in_bold():
    def runs(*mious):
        return [{"seed": i, "miou": v} for i, v in enumerate(mious)]

    res = {
        "budgets": {
            "full": {"fraction": 1.0, "methods": {"supervised": runs(0.8, 0.8)}},
            "1%": {
                "fraction": 0.00682,
                "methods": {"supervised": runs(0.6, 0.62), "erda": runs(0.5, 0.54)},
            },
        }
    }
    lines = format_budget_matrix(res).splitlines()
    assert lines[0] == "| labels (fraction of points) | supervised | erda |"
    # rows sorted by fraction; mean ± sample std: 61.0 ± 1.4 (sqrt(2) * 1), 52.0 ± 2.8
    assert lines[2] == "| 1% (0.682 %) | **61.0 ± 1.4 (60.0, 62.0)** | 52.0 ± 2.8 (50.0, 54.0) |"
    assert lines[3] == "| full (100 %) | 80.0 ± 0.0 (80.0, 80.0) | - |"


@pytest.mark.parametrize(
    "study",
    [
        "budget_study.json",
        "budget_study_600.json",
        "kitti_budget_study.json",
        "kitti_schedule_600.json",
        "kitti_schedule_1200.json",
    ],
)
def test_readme_budget_tables_are_drawn_from_the_shipped_json(study):
    # every label-budget table in docs/RESULTS.md is format_budget_matrix of its JSON,
    # verbatim: a number typed by hand, or a JSON rerun without the docs, fails here
    repo = REPO
    table = format_budget_matrix(json.loads((repo / "docs" / study).read_text()))
    assert table in (repo / "docs" / "RESULTS.md").read_text()


def test_readme_results_table_is_the_study_table():
    # the README summarises with docs/ERDA_STUDY.md's rooms table (the recommended recipe
    # beside supervised-only and ERDA), drawn from the same JSONs
    kind, parts = ERDA_STUDY_TABLES["superpoints_test"]
    table = erda_study_table(kind, parts, REPO / "docs")
    assert table in (REPO / "README.md").read_text()


def _run(seed, miou, vals):
    return {
        "seed": seed,
        "miou": miou,
        "val_history": [{"iteration": i, "miou": v} for i, v in enumerate(vals)],
    }


def test_merge_and_choose_on_validation_by_hand():
    a = {
        "budgets": {
            "1%": {
                "fraction": 0.007,
                "methods": {"supervised": [_run(0, 0.60, [0.1, 0.50]), _run(1, 0.62, [0.2, 0.54])]},
            }
        }
    }
    b = {
        "budgets": {
            "1%": {
                "fraction": 0.5,
                "methods": {"sp": [_run(0, 0.50, [0.3, 0.56]), _run(1, 0.51, [0.3, 0.58])]},
            },
            "0.1%": {"fraction": 0.001, "methods": {"sp": [_run(0, 0.4, [])]}},
        }
    }
    merged = merge_budget_results([a, b])
    assert merged["budgets"]["1%"]["fraction"] == 0.007  # from the first part
    assert set(merged["budgets"]["1%"]["methods"]) == {"supervised", "sp"}
    # validation (last entry) chooses sp (57 vs 52), though its TEST mIoU is lower
    assert choose_on_validation(merged) == {"1%": ("sp", pytest.approx(57.0))}
    table = format_validation_matrix(merged)
    assert table.splitlines()[0] == "| labels | sp | supervised |"
    assert "| 1% | **57.0 ± 1.4** | 52.0 ± 2.8 |" in table
    assert "| 0.1% | nan ± nan | - |" in table
    assert final_validation_miou({"val_history": []}) != final_validation_miou({"val_history": []})


def test_select_budget_results_keeps_the_asked_order():
    res = {
        "budgets": {
            "1%": {"fraction": 0.01, "methods": {"a": [1], "b": [2], "c": [3]}},
            "0.1%": {"fraction": 0.001, "methods": {"a": [4]}},
        }
    }
    sel = select_budget_results(res, budgets=["0.1%", "1%", "10%"], methods=["c", "a"])
    assert list(sel["budgets"]) == ["0.1%", "1%"]
    assert list(sel["budgets"]["1%"]["methods"]) == ["c", "a"]
    assert sel["budgets"]["1%"]["fraction"] == 0.01
    assert select_budget_results(res, methods=["z"]) == {"budgets": {}}


def test_recommended_configs_validate_on_a_split_that_is_not_tested_or_trained():
    # the recipe is chosen on validation: a recommended config whose study has a validation
    # split must name one that is neither its test split nor part of its training split
    from pcseg.config import load_config
    from pcseg.config_files import shipped_config_dir

    root = shipped_config_dir()
    assert root is not None
    found = sorted(root.glob("*/recommended*.yaml"))
    assert {p.parent.name for p in found} >= {"budget", "custom"}
    for path in found:
        d = load_config(path).data
        if path.parent.name == "budget":
            assert d.val_split, path
        if d.val_split:
            assert d.val_split != d.test_split, path
            assert d.val_split not in d.train_split.split("+"), path


def test_pq_table_by_hand():
    runs = [
        {
            "pseudo_acc_first_last": [0.2, 0.6],
            "pred_acc_unlabelled_first_last": [0.3, 0.9],
            "pseudo_miou_first_last": [0.1, 0.3],
        },
        {"pseudo_acc_first_last": [0.2, 0.8], "pred_acc_unlabelled_first_last": None},
    ]
    res = {"budgets": {"1%": {"fraction": 0.01, "methods": {"erda": runs}}}}
    row = format_pq_table(res).splitlines()[2]
    # p OA: mean of the ends 0.6, 0.8; q OA only from the run that has it; no mAcc recorded
    assert row == "| 1% | erda | 70.0 | 90.0 | - | - | 30.0 | - |"


#: docs/ERDA_STUDY.md's tables: name -> (kind, [(JSON in docs/, budgets or None, methods or
#: None), ...]); each table is the formatter of `kind` over the merged selections, verbatim
ERDA_STUDY_TABLES: dict[str, tuple[str, list[tuple[str, list[str] | None, list[str] | None]]]] = {
    "arms_test": ("test", [
        ("budget_study.json", ["0.1%", "1%"], ["supervised", "erda"]),
        ("erda_study_arms.json", None, None),
        ("erda_study_fidelity.json", None, None),
        ("erda_study_arms_0p1.json", None, None),
    ]),
    "arms_val": ("val", [
        ("budget_study.json", ["0.1%", "1%"], ["supervised", "erda"]),
        ("erda_study_arms.json", None, None),
        ("erda_study_fidelity.json", None, None),
        ("erda_study_arms_0p1.json", None, None),
    ]),
    "pq": ("pq", [
        ("budget_study.json", ["0.1%", "1%"], ["supervised", "erda"]),
        ("erda_study_arms.json", None, None),
        ("erda_study_fidelity.json", None, None),
        ("erda_study_arms_0p1.json", None, None),
    ]),
    "long": ("test", [
        ("budget_study.json", ["1%"], ["supervised"]),
        ("superpoint_study_supervised.json", ["1%"], None),
        ("erda_study_long.json", None, None),
        ("erda_study_long_superpoints.json", None, None),
    ]),
    "superpoints_test": ("test", [
        ("budget_study.json", ["1pt", "0.1%", "click", "1%", "10%", "full"],
         ["supervised", "erda"]),
        ("superpoint_study_supervised.json", None, None),
        ("superpoint_study_erda.json", None, None),
    ]),
    "superpoints_val": ("val", [
        ("budget_study.json", ["1pt", "0.1%", "click", "1%", "10%"], ["supervised", "erda"]),
        ("superpoint_study_supervised.json", None, None),
        ("superpoint_study_erda.json", None, None),
    ]),
    "kitti": ("test", [
        ("kitti_budget_study.json", ["1pt", "0.1%", "1%", "10%", "full"], ["supervised", "erda"]),
        ("kitti_superpoint_study.json", None, None),
        ("kitti_click_study.json", None, None),
    ]),
}  # fmt: skip


def erda_study_table(
    kind: str, parts: list[tuple[str, list[str] | None, list[str] | None]], docs: Path
) -> str:
    """One table of docs/ERDA_STUDY.md from the JSONs in ``docs`` (missing JSONs left out)."""
    chosen = [
        select_budget_results(json.loads((docs / name).read_text()), budgets, methods)
        for name, budgets, methods in parts
        if (docs / name).is_file()
    ]
    merged = merge_budget_results(chosen)
    fmt = {"test": format_budget_matrix, "val": format_validation_matrix, "pq": format_pq_table}
    return fmt[kind](merged)


@pytest.mark.parametrize("name", sorted(ERDA_STUDY_TABLES))
def test_erda_study_tables_are_drawn_from_the_shipped_json(name):
    docs = Path(__file__).resolve().parents[2] / "docs"
    kind, parts = ERDA_STUDY_TABLES[name]
    assert erda_study_table(kind, parts, docs) in (docs / "ERDA_STUDY.md").read_text()


def test_image_labelled_fraction_counts_pixels(tmp_path):
    from helpers.image_runs import make_synthetic_processed

    from pcseg.images import processed as ip
    from pcseg.workflows.budget import spec_parts

    make_synthetic_processed(tmp_path, train=8, val=1, test=1, size=16)
    for spec in ("1%", "1/4", "full"):
        ip.ensure_weak_labels(tmp_path, spec)
    ids = ip.read_meta(tmp_path).splits["train"]
    total = 16 * 16 * len(ids)
    weak = sum(int((ip.load_weak_mask(tmp_path, "1%", i) != 255).sum()) for i in ids)
    assert labelled_fraction(tmp_path, "1%", "train") == pytest.approx(weak / total)
    chosen = ip.labelled_images(tmp_path, "1/4")
    assert len(chosen) == 2
    full = sum(int((ip.load_mask(tmp_path, i) != 255).sum()) for i in chosen)
    assert labelled_fraction(tmp_path, "1/4", "train") == pytest.approx(full / total)
    assert labelled_fraction(tmp_path, "full", "train") == pytest.approx(1.0)
    assert labelled_fraction(tmp_path, "full", "train+val") == pytest.approx(1.0)
    assert spec_parts("1/8", images=True) == ("1/8", "1of8", False)
    assert spec_parts("1%") == ("1%", "1pct", False) and spec_parts("full")[2]


def test_images_doc_tables_are_drawn_from_the_shipped_json():
    # docs/IMAGES.md's 2D budget tables (test mIoU, the validation matrix that chooses, p vs q)
    # are those of docs/images_budget_study.json, verbatim
    results = json.loads((REPO / "docs" / "images_budget_study.json").read_text())
    assert set(results["budgets"]) == {"1%", "1/8"}
    for entry in results["budgets"].values():
        assert set(entry["methods"]) == {"supervised", "erda", "u2pl"}
        assert all(len(runs) == 3 for runs in entry["methods"].values())
    doc = (REPO / "docs" / "IMAGES.md").read_text()
    for table in (
        format_budget_matrix(results),
        format_validation_matrix(results),
        format_pq_table(results),
    ):
        assert table in doc
