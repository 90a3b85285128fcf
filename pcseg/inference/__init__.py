"""``pcseg predict``: a trained checkpoint on your own files, labelled files out.

No labels are needed. Every ORIGINAL point gets a class (``pred_class``) and a confidence
(``confidence`` = the maximum softmax probability of its voxel) and the file is written in
its own format with all its fields kept (:func:`pcseg.io.points.write_points`):
LAS gets ``classification`` set through the reverse of ``map`` when the labels came from
the classification codes, plus extra dimensions ``pred_class`` / ``confidence``; PLY, NPY,
NPZ, PCD and TXT get added fields / columns; a KITTI ``.bin`` is copied with a ``.label``
file next to it. ``OUT/predict_summary.json`` holds the class shares of every file, merged
over the runs into ``OUT`` (:func:`~pcseg.inference.files.merge_summaries`).

In-memory pipeline per file (:mod:`~pcseg.inference.memory`): read (float64) -> shift to the
file's origin -> features exactly as ``pcseg prepare custom`` computes them
(:func:`pcseg.readers.custom.point_features`) -> voxelize the whole file once (test mode:
the first point of a voxel represents it, as ``pcseg test``) -> tiles -> network -> each
point takes its voxel's prediction.

Tiling (bounded memory, :mod:`~pcseg.inference.tiling`): tiles of at most ``voxel_budget``
voxels, each with ``overlap`` metres of context on every side, stitched by ownership (every
voxel takes the prediction of the one tile whose core holds it).

Exactness: a voxel's output depends only on the voxels within the network's receptive field
(:func:`~pcseg.inference.tiling.receptive_field`, in voxels; 94 for a MinkUNet14A). When
``overlap`` >= that radius, tiled prediction equals untiled prediction for every point (up
to float summation order: probabilities within 1e-5, classes equal). With a smaller overlap
only voxels nearer than the radius to a tile border can differ; the tolerance stated and
tested (tests/inference/test_memory.py) at the default overlap of 16 voxels: probabilities
within 1e-3 and at most 1 % of voxels with another class (measured: 1e-5 and none). The
default is a trade-off: the theoretical radius is large, the effective one far smaller, and
the overlap cost (extra voxel visits, reported per file as ``overlap_cost``) grows with it.

Out of core (:mod:`~pcseg.inference.streamed`): LAS/LAZ, NPY and binary PLY files of more
than ``chunk_points`` points (``stream='auto'``; 'always' / 'never' force it) are never read
whole: a regular XY grid of tiles is planned from a first pass, the points are spread over
per-tile buffers on disk, each tile is predicted as above (its core split further at the
median when it holds more than ``voxel_budget`` voxels) and the file is written back chunk
by chunk, so the peak memory is set by ``chunk_points`` and ``voxel_budget``. ASCII PLY
(and binary PLY whose vertex element is not first or has a list property), PCD, NPZ, TXT and
``.bin`` files (and ``--format`` conversions) take the in-memory path above.

Modules, each importing only those below it (tests/inference/test_files.py checks it):
:mod:`~pcseg.inference.files` (``predict_files`` / ``predict_file``: inputs, dispatch,
summary) -> :mod:`~pcseg.inference.memory` | :mod:`~pcseg.inference.streamed` (the two
paths) -> :mod:`~pcseg.inference.tiling` (tiles and the one tile loop) |
:mod:`~pcseg.inference.las_codes` (label / LAS classification codes) ->
:mod:`~pcseg.inference.predictor` (checkpoint -> model -> logits) -> :mod:`pcseg.io`.
Distributed (``torchrun``): see :mod:`~pcseg.inference.files`.
"""
