"""Import tensorflow once, without its start-up noise on stderr.

TensorFlow 2.21 writes absl lines ("Could not find cuda drivers ...") to file
descriptor 2 while it is imported, before ``TF_CPP_MIN_LOG_LEVEL`` takes
effect. We capture fd 2 during the import and replay it only if the import
fails, so a real problem is never hidden.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from types import ModuleType

__all__ = ["import_tensorflow"]


def import_tensorflow() -> ModuleType:
    """Return the ``tensorflow`` module, importing it quietly the first time."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    # Keras' retracing notices and similar are not actionable for eddy's users.
    tensorflow.get_logger().setLevel(logging.ERROR)
    return tensorflow
