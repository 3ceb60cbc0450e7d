"""Measuring a model on labelled data, and drawing what it gets wrong.

- :mod:`~tagteller.evaluate.metrics`: confusion matrix, per-class precision/recall/F1, macro and
  weighted averages, top-k accuracy, calibration (ECE) and the most-confused pairs (numpy only);
- :mod:`~tagteller.evaluate.measure`: the one way a model is run over labelled images (through
  the same :class:`~tagteller.engine.Engine` as ``tagteller scan``) and scored, used by
  ``tagteller evaluate``, training's install decision and ``tagteller demo``;
- :mod:`~tagteller.evaluate.evaluate`: a labelled dataset in its domain's layout, measured;
- :mod:`~tagteller.evaluate.report`: ``report.json`` and the PNGs of ``tagteller evaluate``, and
  the training curves of ``tagteller report`` (:func:`~tagteller.evaluate.report.write_training_report`);
- :mod:`~tagteller.evaluate.plots`: the matplotlib figures (Agg, no pyplot). Only the two commands
  import it, never ``tagteller scan``; importing this package does not import matplotlib.
"""

from __future__ import annotations
