"""eddy's trainer: fit a recurrent Keras model, export it to ONNX with
explicit state, verify the export, and write a model version directory.

Modules, in the order a run uses them: :mod:`~eddy.trainer.config` (the
knobs), :mod:`~eddy.trainer.series` (CSV loading, validation, missing values),
:mod:`~eddy.trainer.windows` (windows, splits, normalisation statistics),
:mod:`~eddy.trainer.streams` (the same rows as parallel streams for ``--training tbptt``),
:mod:`~eddy.trainer.model` (build, and fit on windows), :mod:`~eddy.trainer.tbptt` (fit on long sequences
with the state carried between chunks), :mod:`~eddy.trainer.evaluate` (test
metrics and naive baselines), :mod:`~eddy.trainer.keras_stack` (what can be
exported), :mod:`~eddy.trainer.onnx_export` (the two graphs),
:mod:`~eddy.trainer.parity` (graphs vs Keras), :mod:`~eddy.trainer.quantize`
(int8), :mod:`~eddy.trainer.report`, :mod:`~eddy.trainer.publish` (atomic
version directories); :mod:`~eddy.trainer.train` runs them all and
:mod:`~eddy.trainer.from_keras` exports an existing ``.keras`` file.

Importing this package is cheap: tensorflow is imported only by the modules
that need it (``model``, ``tbptt``, ``keras_stack``, ``onnx_export``), and
:mod:`eddy.trainer.train` and the CLI import those lazily.
"""

from __future__ import annotations

import os

# Silence TensorFlow's C++ INFO/WARNING logs; must be set before tensorflow is
# first imported. A user's explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__all__: list[str] = []
