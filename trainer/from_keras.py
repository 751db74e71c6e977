"""``eddy export``: turn an existing Keras model file into an eddy model version.

The model must be a stack of SimpleRNN, LSTM or GRU layers (one kind, equal
units) with one Dense head, optionally with Dropout-like layers in between
(:func:`eddy.trainer.keras_stack.inspect_model` says what is unsupported otherwise).
It is exported and verified exactly like a trained one (the three parity
checks), and published atomically as ``OUT/<next version>/`` with a copy of
the Keras file as ``model.keras``.

eddy's runtime takes raw values and normalises them with the manifest's
statistics, so the export needs them:

- ``data`` (a CSV): the statistics of its training part (``split``), as
  ``eddy train`` computes them; the parity checks and test metrics use its
  windows. Use it when the model was trained on data normalised that way.
- ``norm_identity``: mean 0, std 1 (the model takes raw values as they are);
  the parity checks run on seeded random inputs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eddy.runtime.core.manifest import Manifest, Normalization

from . import publish
from .errors import DataError, UnsupportedModelError
from .evaluate import evaluate
from .parity import PARITY_STEPS
from .series import load_csv
from .windows import make_dataset

__all__ = ["DEFAULT_WINDOW", "ExportOutcome", "export_keras_file"]

DEFAULT_WINDOW = 10  # window recorded for models with a dynamic time axis when --window is not given
_RANDOM_WINDOWS = 64  # parity windows drawn with --norm-identity
_RANDOM_STEPS = 500  # parity sequence length drawn with --norm-identity


@dataclass(frozen=True)
class ExportOutcome:
    """What an export produced."""

    version_dir: Path
    manifest: Manifest


def export_keras_file(
    path: str | Path,
    out: str | Path,
    *,
    features: list[str] | None = None,
    targets: list[str] | None = None,
    window: int | None = None,
    horizon: int = 1,
    data: str | Path | None = None,
    fill: str | None = None,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    norm_identity: bool = False,
    name: str | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> ExportOutcome:
    """Export the Keras model in ``path`` into ``out/<next version>/``; see the module docstring.

    Raises :class:`~eddy.trainer.errors.DataError` for an unreadable file or data
    that does not fit the model, :class:`~eddy.trainer.errors.UnsupportedModelError`
    for a model eddy cannot export, and :class:`~eddy.trainer.errors.ExportError` /
    :class:`~eddy.trainer.errors.ParityError` if the export fails; nothing is left
    in ``out`` then.
    """
    if (data is None) == (not norm_identity):
        raise DataError("give --data CSV (normalisation statistics from its training part) or --norm-identity")
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise DataError(f"{path}: no such file")

    from .keras_stack import inspect_model, keras  # tensorflow from here on
    from .onnx_export import export_model

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, OSError, zipfile errors, ...
        raise DataError(f"{path}: cannot load it as a Keras model: {type(e).__name__}: {_first_line(e)}") from None
    stack = inspect_model(model)
    window = _window(path, model, window)
    if data is not None:
        series = load_csv(data, features, targets, fill=fill)
        for kind, cols, n in (("feature", series.features, stack.n_features), ("target", series.targets, stack.n_targets)):
            if len(cols) != n:
                raise DataError(f"{data}: the model takes {n} {kind} column(s), the data gives {len(cols)} "
                                f"({', '.join(cols)}); choose with --features and --target")
        dataset = make_dataset(series, window, horizon, split)
        normalization = dataset.normalization
        windows, sequence = dataset.x_test, dataset.normalised_inputs()[:PARITY_STEPS]  # [N, W, F], [T, F]
        metrics: dict[str, Any] = evaluate(model, dataset)[1]
        features, targets = series.features, series.targets
        source: dict[str, Any] = {"normalization": "data", "data": str(data), "rows": len(series),
                                  "split": list(split), "split_rows": {k: list(v) for k, v in dataset.rows.items()}}
    else:
        features = _names(features, "x", stack.n_features, "--features")
        targets = _names(targets, "y", stack.n_targets, "--target")
        normalization = Normalization([0.0] * stack.n_features, [1.0] * stack.n_features,
                                      [0.0] * stack.n_targets, [1.0] * stack.n_targets)
        rng = np.random.default_rng(seed)
        windows = rng.standard_normal((_RANDOM_WINDOWS, window, stack.n_features)).astype(np.float32)  # [N, W, F]
        sequence = rng.standard_normal((_RANDOM_STEPS, stack.n_features)).astype(np.float32)  # [T, F]
        metrics, source = {}, {"normalization": "identity", "parity_data": "seeded standard normal"}

    with publish.stage(out) as staging:
        exported = export_model(model, staging.path, windows, sequence, seed=seed)
        shutil.copyfile(path, staging.path / publish.KERAS_FILE)
        manifest = staging.manifest(
            exported,
            name=name or out.resolve().name,
            cell=stack.cell,
            layers=len(stack.rnn),
            units=stack.units,
            features=list(features),
            targets=list(targets),
            window=window,
            horizon=horizon,
            normalization=normalization,
            metrics=metrics,
            training={"exported_by": "eddy export", "keras_file": str(path), "seed": seed, **source},
        )
        version_dir = staging.publish(manifest)
    if log is not None:
        log(f"exported {path} as {manifest.cell} {manifest.layers}x{manifest.units}")
    return ExportOutcome(version_dir, manifest)


def _window(path: Path, model: Any, window: int | None) -> int:
    """The manifest's window: the model's fixed input length, else ``window``, else the default."""
    if len(model.input_shape) != 3:
        raise UnsupportedModelError(f"unsupported model: input shape {model.input_shape} is not [batch, time, features]")
    fixed = model.input_shape[1]
    if fixed is not None and window is not None and window != fixed:
        raise DataError(f"{path}: the model's input window is {fixed} samples, --window says {window}")
    return int(fixed or window or DEFAULT_WINDOW)


def _names(given: list[str] | None, prefix: str, n: int, flag: str) -> list[str]:
    if given is None:
        return [f"{prefix}{i}" for i in range(n)]
    if len(given) != n:
        raise DataError(f"{flag}: the model has {n} column(s), {len(given)} name(s) given")
    return list(given)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "no details"
