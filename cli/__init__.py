"""The ``eddy`` command line: composes the runtime (serve, stream, info) and the trainer (train, export).

This is the one place that knows both halves; the runtime never imports the trainer.
"""
