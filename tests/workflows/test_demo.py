"""pcseg.workflows.demo: the demo configs validate on their own area, never on the test area."""


def test_demo_validates_on_its_own_area():
    """best.pt is chosen on a validation area, never on the test area it is scored with; the
    training areas stay Area_1 + Area_2."""
    from helpers.paths import REPO

    from pcseg.config import load_config

    for name in ("erda", "supervised"):
        d = load_config(REPO / "configs" / "demo" / f"{name}.yaml", []).data
        assert (d.train_split, d.val_split, d.test_split) == ("Area_1+Area_2", "Area_4", "Area_3")
        assert (
            d.synthetic is not None and d.synthetic.num_areas == 4 and "Area_4" in d.prepare_splits
        )
