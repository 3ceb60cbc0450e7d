"""The training side of tagteller (the ``train`` extra): the only package that imports tensorflow.

``tagteller train --domain NAME DATA`` turns a folder of labelled photos into an installed,
parity-checked ONNX model. One module per concept:

- :mod:`~tagteller.train.pipeline`: shuffling, augmentation and batching on ``tf.data`` of the
  images :mod:`tagteller.sample_decoding` decoded once (with the engine's own function, so
  training and inference see the same pixels); class weights;
- :mod:`~tagteller.train.backbones`: ``keras.applications`` backbones by name, their pixel
  scaling, their blocks (for progressive unfreezing), the custom ``"cnn"``, and where the weights
  come from (``imagenet``, a file, ``$TAGTELLER_WEIGHTS_DIR``, none);
- :mod:`~tagteller.train.model`: the classifier (scaling, backbone, head, softmax), unfreezing
  with BatchNorm kept in inference mode, compiling per phase, checkpoints;
- :mod:`~tagteller.train.schedule`: the learning rate within a phase (plateau or cosine);
- :mod:`~tagteller.train.loop`: the phased epoch loop driven by :mod:`tagteller.epoch_decisions`,
  with checkpoints, TensorBoard logs and Ctrl-C handling;
- :mod:`~tagteller.train.export`: Keras to ONNX with tf2onnx, the parity check, metadata, int8;
- :mod:`~tagteller.train.trainer`: the whole ``train`` command, step by step.

Every module here imports tensorflow (or keras), directly or through a sibling; what training
uses that does not lives in the core: :mod:`tagteller.runs` (run folders and ``history.json``),
:mod:`tagteller.epoch_decisions` (what happens after each epoch), :mod:`tagteller.training_prompt`
(the interactive override), :mod:`tagteller.install` (installing a model only when it is better),
:mod:`tagteller.evaluate.measure` (measuring a model file), :mod:`tagteller.datacheck`
(``tagteller data check``), :mod:`tagteller.sample_decoding` (decoding the samples once),
:mod:`tagteller.unknown_data` (the open-set negatives of ``--unknown-data``) and
:mod:`tagteller.openset_graph` (the open-set score added to the exported ONNX graph).
``tests/test_tensorflow_boundary.py`` checks both sides.

Importing this package itself imports nothing heavy; the modules that need tensorflow import it.
"""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter (CPU feature notices, oneDNN) would drown the one-line epoch
# summaries; warnings and errors still show. Set before any module here imports tensorflow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
