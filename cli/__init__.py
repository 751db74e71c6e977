"""The ``eddy`` command line: composes the runtime (serve, stream, info) and the trainer (train, export).

One module per command (``serve.py``, ``stream.py``, ``token.py``, ``info.py``, ``train.py``, ``export.py``; the last two
share ``trainer_common.py``), ``main.py`` dispatches, ``errors.py`` holds the one error -> exit-status table.
This is the one place that knows both halves; the runtime never imports the trainer.
"""

import os

# gRPC's C core logs to stderr on its own (handshake failures, "Failed to add port"); the CLI says what went wrong
# in one line of its own (connect.py), so it keeps that log off unless GRPC_VERBOSITY is set. It is read when grpc
# loads, and every command reaches grpc through this package.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
