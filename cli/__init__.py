"""The ``eddy`` command line: composes the runtime (serve, stream, info) and the trainer (train, export).

One module per command (``serve.py``, ``stream.py``, ``token.py``, ``info.py``, ``train.py``, ``export.py``; the last two
share ``trainer_common.py``), ``main.py`` dispatches, ``errors.py`` holds the one error -> exit-status table.
This is the one place that knows both halves; the runtime never imports the trainer.
"""
