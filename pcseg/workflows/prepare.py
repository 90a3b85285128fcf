"""The data of a run, made on demand: ``pcseg train`` (rank 0, before training) and
``pcseg active`` call :func:`prepare_if_missing`, which generates the synthetic raw rooms
of ``data.synthetic`` when asked to and prepares ``data.raw`` into ``data.root`` when the
processed folder, a split of ``data.prepare_splits`` or a label spec is missing. A folder
made with other settings (another voxel size, an older pcseg) is never topped up: the
:class:`pcseg.readers.prepare.PrepareError` names what changed and how to reprocess it."""

from __future__ import annotations

from pathlib import Path

from pcseg.config import Config, is_image_data
from pcseg.data import processed
from pcseg.data.weak_labels import parse_spec
from pcseg.readers import READERS
from pcseg.readers.prepare import PrepareOptions, prepare_dataset, reader_options
from pcseg.readers.synthetic import write_synthetic_s3dis


def labels_ready(root: Path, spec: str) -> bool:
    """Whether the processed folder ``root`` holds label files of ``spec`` ('full' always)."""
    if parse_spec(spec).name == "full":
        return True
    d = processed.labels_path(root, spec, "x").parent
    return d.is_dir() and any(d.iterdir())


def prepare_if_missing(cfg: Config) -> None:
    """Create ``data.root`` (with the train label spec, ``data.prepare_specs`` and the
    splits ``data.prepare_splits``) from ``data.raw`` when missing; the synthetic rooms of
    ``data.synthetic`` are written to ``data.raw`` first when it does not exist or lacks an
    area of ``data.prepare_splits``.

    Raises FileNotFoundError naming what is missing when nothing can be prepared.
    """
    root = Path(cfg.data.root)
    specs = list(dict.fromkeys([cfg.data.label_spec, *cfg.data.prepare_specs]))
    if is_image_data(cfg.data):
        prepare_images_if_missing(cfg, specs)
        return
    want_splits = list(cfg.data.prepare_splits)
    if (root / "meta.json").is_file() and all(labels_ready(root, s) for s in specs):
        have = processed.read_meta(root)["splits"]
        if all(s in have for s in want_splits):
            return
        print(
            f"[train] {root}/meta.json lacks split(s) "
            f"{[s for s in want_splits if s not in have]} of data.prepare_splits"
        )
    if cfg.data.raw is None:
        raise FileNotFoundError(
            f"data.root {root} has no processed data (meta.json) or lacks label spec(s) {specs}; "
            f"run `pcseg prepare` or set data.raw"
        )
    raw = Path(cfg.data.raw)
    synthetic = cfg.data.synthetic
    # synthetic areas the raw folder lacks (e.g. a validation area added to the config)
    missing_areas = [s for s in want_splits if s.startswith("Area_") and not (raw / s).is_dir()]
    if not raw.exists() or (synthetic is not None and missing_areas):
        if synthetic is None:
            raise FileNotFoundError(f"data.raw {raw} does not exist")
        print(f"[train] generating synthetic raw data in {raw}")
        write_synthetic_s3dis(raw, **synthetic.model_dump())
    dataset = cfg.data.dataset
    if dataset not in READERS:
        raise FileNotFoundError(
            f"data.root {root} has no processed data (meta.json); a {dataset} folder is "
            f"prepared with `pcseg prepare {dataset}`"
        )
    kitti_yaml = cfg.data.semantickitti_yaml
    given = {"config": Path(kitti_yaml)} if dataset == "semantickitti" and kitti_yaml else {}
    opts = PrepareOptions(
        dataset=dataset,
        raw=raw,
        out=root,
        voxel_size=cfg.data.voxel_size,
        seed=0,
        labels=specs,
        splits=want_splits or None,
        reader_options=reader_options(READERS[dataset], given, dataset),
        force_hint=(
            f"reprocess it with `pcseg prepare {dataset} --raw {raw} --out {root} --force` "
            "or set data.root to another folder"
        ),
    )
    print(f"[train] preparing {root} from {raw} (labels {specs})")
    prepare_dataset(opts)


def prepare_images_if_missing(cfg: Config, specs: list[str]) -> None:
    """The image counterpart of :func:`prepare_if_missing`: ``data.root`` prepared from
    ``data.raw`` (``pcseg prepare images|voc|cityscapes``; synthetic images of
    ``data.synthetic_images`` written there first when it does not exist) when it has no
    meta.json; then the weak labels of ``specs`` drawn once (seed 0, as ``pcseg prepare``)."""
    from pcseg.images.processed import ensure_weak_labels

    root = Path(cfg.data.root)
    if not (root / "meta.json").is_file():
        if cfg.data.raw is None:
            raise FileNotFoundError(
                f"data.root {root} has no processed images (meta.json); run `pcseg prepare "
                f"{cfg.data.dataset}` or set data.raw"
            )
        raw = Path(cfg.data.raw)
        if not raw.exists():
            if cfg.data.synthetic_images is None:
                raise FileNotFoundError(f"data.raw {raw} does not exist")
            from pcseg.images.synthetic import write_synthetic_images

            print(f"[train] generating synthetic images in {raw}")
            write_synthetic_images(raw, **cfg.data.synthetic_images.model_dump())
        from pcseg.images.prepare import ImagePrepareOptions, prepare_images

        print(f"[train] preparing {root} from {raw} (labels {specs})")
        prepare_images(
            ImagePrepareOptions(dataset=cfg.data.dataset, raw=raw, out=root, labels=specs)
        )
    for spec in specs:
        ensure_weak_labels(root, spec, seed=0)
