"""The device core: the model-directory format, manifest, loading, ``Stream``, errors, state codec.

numpy and onnxruntime only; nothing here knows about serving or the wire.
"""
