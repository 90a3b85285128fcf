"""Training and evaluation: config-driven trainer, full-resolution evaluator, metrics.

Modules: ``trainer`` (:func:`pcseg.engine.trainer.train`), ``evaluate``
(:func:`pcseg.engine.evaluate.evaluate`), ``metrics``, ``optim``, ``checkpoint``,
``distributed``, ``data`` (datasets / loaders from a config).
"""
