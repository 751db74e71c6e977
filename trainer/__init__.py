"""eddy's trainer: fit a recurrent Keras model, export it to ONNX with
explicit state, verify the export, and write a model version directory.

Importing this package is cheap: tensorflow is imported only by the modules
that need it (:mod:`trainer.model`, :mod:`trainer.export`,
:mod:`trainer.train`), and :mod:`trainer.cli` imports those lazily.
"""

from __future__ import annotations

import os

# Silence TensorFlow's C++ INFO/WARNING logs; must be set before tensorflow is
# first imported. A user's explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__all__: list[str] = []
