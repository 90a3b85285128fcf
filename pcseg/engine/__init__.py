"""Training and evaluation: config-driven trainer, full-resolution evaluator, metrics.

Modules: ``trainer`` (:class:`pcseg.engine.trainer.Trainer`, :func:`pcseg.engine.trainer.train`),
``evaluate`` (:func:`pcseg.engine.evaluate.evaluate`), ``setup`` (device, autocast, seeding,
:func:`pcseg.engine.setup.torch_globals`), ``builders`` (model / method from a config),
``summary`` (end-of-run summary), ``metrics``, ``optim``, ``checkpoint``, ``data`` (datasets /
loaders from a config). Distributed helpers: :mod:`pcseg.distributed`.
"""
