"""``eddy export``: turn an existing Keras model file into an eddy model version.

The model must be a stack of SimpleRNN, LSTM or GRU layers (one kind, equal
units) with one Dense head, optionally with Dropout-like layers in between
(:func:`eddy.trainer.keras_stack.inspect_model` says what is unsupported otherwise).
It is exported and verified exactly like a trained one (the parity checks),
and published atomically as ``OUT/<next version>/`` with a copy of the Keras
file as ``model.keras``.

The model is used as it was trained. By default the graphs take and return
exactly what the Keras model takes and returns (raw in, raw out, nothing
added). A model trained on scaled data gets its scaling from explicit
statistics (``input_mean``/``input_std``/``target_mean``/``target_std``),
which are put inside the graphs, so clients still send raw values.

``data`` (a CSV) never changes the graphs: it scores them on its test part
(window and streamed RMSE next to persistence), calibrates prediction
intervals on its validation part (:mod:`eddy.trainer.calibrate`) and the
parity checks run on its values; without it they run on seeded random inputs
and the version has no intervals.

A ``model.keras`` that eddy wrote (``eddy train``, ``eddy export``) holds a network that may read normalised
changes, not raw values. Its record (:mod:`eddy.trainer.keras_record`: inside the file, or the manifest next to
it) says what the served graphs put around it; the export rebuilds exactly those graphs (the same ONNX
computation, so the same predictions bit for bit with the same tf2onnx/onnx/onnxruntime versions; versions
whose graphs took normalised values, ``io: normalised``, come back with the normalisation inside the graphs,
equal within the parity rule). Flags that would change the served model (scaling, columns, window, horizon,
semantics) must agree with the record or are refused; an eddy-trained network without a record is refused.
Without ``data`` the record's interval calibration is kept; with it, the intervals are calibrated on ``data``
(the same as the version's when it is the data and split the model was trained on).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eddy.runtime.core.calibration import LEVELS
from eddy.runtime.core.manifest import Manifest, Normalization

from . import publish
from .calibrate import calibrate
from .config import TrainConfig
from .errors import DataError, UnsupportedModelError
from .evaluate import add_streamed, evaluate, forward, streamed_score
from .parity import PARITY_STEPS
from .series import load_csv
from .transform import Transform
from .windows import make_dataset

__all__ = ["DEFAULT_SPLIT", "DEFAULT_WINDOW", "ExportOutcome", "export_keras_file"]

DEFAULT_WINDOW = 10  # window recorded for models with a dynamic time axis when --window is not given
DEFAULT_SPLIT = TrainConfig().split  # train/val/test fractions of --data when the file's record names none
_SCALING_FLAGS = ("--input-mean", "--input-std", "--target-mean", "--target-std")
_RANDOM_WINDOWS = 64  # parity windows drawn without --data
_RANDOM_STEPS = 500  # parity sequence length drawn without --data


@dataclass(frozen=True)
class ExportOutcome:
    """What an export produced."""

    version_dir: Path
    manifest: Manifest
    unscaled: tuple[str, ...] = ()  # scaling flags neither given nor taken from the model or its record
    rebuilt_from: str | None = None  # where an eddy-written file's record came from (None: a model of the user's)


def export_keras_file(
    path: str | Path,
    out: str | Path,
    *,
    features: list[str] | None = None,
    targets: list[str] | None = None,
    window: int | None = None,
    horizon: int | None = None,
    data: str | Path | None = None,
    fill: str | None = None,
    season: int | None = None,
    split: tuple[float, float, float] | None = None,
    norm_identity: bool = False,
    input_mean: list[float] | None = None,
    input_std: list[float] | None = None,
    target_mean: list[float] | None = None,
    target_std: list[float] | None = None,
    formats: tuple[str, ...] = ("onnx",),
    semantics: str | None = None,
    intervals: tuple[float, ...] = LEVELS,
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
    scaling = (input_mean, input_std, target_mean, target_std)
    if season is not None and data is None:
        raise DataError("--season scores the seasonal-naive baseline on --data; give --data too")
    if norm_identity and any(v is not None for v in scaling):
        raise DataError("--norm-identity (the default) says the model takes raw values; drop it to give "
                        "--input-mean/--input-std/--target-mean/--target-std")
    path, out = Path(path), Path(out)
    from .keras_file import precheck_model_file
    from .keras_record import read_record

    precheck_model_file(path)  # broken files and refused layers, from the file's config before paying for tensorflow
    found = read_record(path)
    record, rebuilt_from = found if found is not None else (None, "")
    if record is not None:
        _agree(path, record, rebuilt_from, {"--features": features, "--target": targets, "--window": window,
                                            "--horizon": horizon, "--semantics": semantics},
               scaling_given=norm_identity or any(v is not None for v in scaling))
        features, targets, horizon, semantics = record.features, record.targets, record.horizon, record.semantics
        split = split or (tuple(record.split) if record.split else None)  # type: ignore[assignment]
        season = season if season is not None or data is None else record.season  # scored as when trained
    horizon, semantics, split = horizon or 1, semantics or "stream", split or DEFAULT_SPLIT
    from .keras_stack import inspect_model, keras  # tensorflow from here on
    from .onnx_export import export_model
    from .self_contained import make_self_contained, make_window_semantics

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, OSError, zipfile errors, ...
        raise DataError(f"{path}: cannot load it as a Keras model: {type(e).__name__}: {_first_line(e)}") from None
    stack = inspect_model(model)
    window = _window(path, model, window if record is None else record.window)
    if record is not None:
        normalization = record.normalization
        try:
            transform = Transform.for_columns(record.target_transform, record.features, record.targets,
                                              season=record.season, horizon=record.horizon)
        except ValueError as e:
            raise DataError(f"{path}: {rebuilt_from}: {e}") from None
        for kind, cols, n in (("feature", record.features, stack.n_features), ("target", record.targets, stack.n_targets)):
            if len(cols) != n:
                raise DataError(f"{path}: the network takes {n} {kind} column(s), {rebuilt_from} names {len(cols)}")
    else:
        if stack.input_norm is not None:
            if input_mean is not None or input_std is not None:
                raise DataError(f"{path}: the model has its own Normalization layer; drop --input-mean/--input-std")
            input_mean, input_std = stack.input_norm  # the layer's statistics go into the graphs
        normalization = _normalization(stack.n_features, stack.n_targets, input_mean, input_std, target_mean,
                                       target_std)
        transform = Transform("level", stack.n_features)
    unscaled = () if record is not None else tuple(flag for flag, v in zip(_SCALING_FLAGS, (
        input_mean, input_std, target_mean, target_std), strict=True) if v is None)
    if semantics == "window" and transform.is_delta:
        raise UnsupportedModelError(f"{path}: window semantics need the level target transform, "
                                    f"{rebuilt_from} says {transform.kind}")
    predictor = _ScaledInputs(model, normalization) if stack.input_norm is not None else None
    dataset: Any = None
    if data is not None:
        series = load_csv(data, features, targets, fill=fill)
        for kind, cols, n in (("feature", series.features, stack.n_features), ("target", series.targets, stack.n_targets)):
            if len(cols) != n:
                raise DataError(f"{data}: the model takes {n} {kind} column(s), the data gives {len(cols)} "
                                f"({', '.join(cols)}); choose with --features and --target")
        reason = transform.check(series.inputs, str(data))
        if reason:
            raise DataError(reason)
        dataset = make_dataset(series, window, horizon, split, transform if transform.is_delta else None,
                               normalization=normalization)
        windows, sequence = dataset.x_test, dataset.normalised_inputs()[:PARITY_STEPS]  # [N, W, F], [T, F]
        raw = series.inputs  # [T, F]
        metrics: dict[str, Any] = evaluate(predictor or model, dataset, season)[1]
        features, targets = series.features, series.targets
        source: dict[str, Any] = {"data": str(data), "rows": len(series),
                                  "split_rows": {k: list(v) for k, v in dataset.rows.items()},
                                  "parity_data": "the data's test windows and whole series"}
    else:
        features = _names(features, "x", stack.n_features, "--features")
        targets = _names(targets, "y", stack.n_targets, "--target")
        rng = np.random.default_rng(seed)
        windows = rng.standard_normal((_RANDOM_WINDOWS, window, stack.n_features)).astype(np.float32)  # [N, W, F]
        sequence = rng.standard_normal((_RANDOM_STEPS, stack.n_features)).astype(np.float32)  # [T, F]
        raw = transform.series_from_inputs(sequence * np.asarray(normalization.input_std)
                                           + normalization.input_mean)  # [T, F] raw units
        metrics, source = {}, {"parity_data": "seeded standard normal (in the model's input units)"}
    scaled = any(v is not None for v in scaling)
    rebuilt = (f"rebuilt from {rebuilt_from}: target transform {transform.kind}, the network's normalisation "
               "(inside the graphs" + (")" if record is None or record.io == "raw" else
                                       "; the version's graphs took normalised values: the same predictions within "
                                       "the parity rule, not bit for bit)"))
    source["normalization"] = (rebuilt if record is not None
                               else "the model's Normalization layer (inside the graphs)" if stack.input_norm is not None
                               else "given (inside the graphs)" if scaled
                               else "none: the model takes and returns raw values")
    source["split"] = list(split)
    if season is not None:
        source["season"] = season

    with publish.stage(out) as staging:
        core = export_model(model, staging.path, windows, sequence, seed=seed, predictor=predictor)
        contained = make_self_contained(staging.path, core, transform, normalization, raw, features=features,
                                        targets=targets, horizon=horizon, window=window, seed=seed)
        if semantics == "window":
            def reference(raw_windows: np.ndarray) -> np.ndarray:  # Keras on each window, back to raw units
                z = (raw_windows - np.asarray(normalization.input_mean)) / np.asarray(normalization.input_std)
                y = forward(predictor or model, z.astype(np.float32))
                return np.asarray(y, np.float64) * normalization.target_std + normalization.target_mean

            contained = make_window_semantics(staging.path, contained, raw, reference, features=features,
                                              targets=targets, horizon=horizon, window=window, transform=transform.kind)
            source["semantics"] = f"window: each answer depends only on the last {window} samples"
        network_stream = contained.y_stream  # [T, O] the networks alone
        if record is not None and record.blend:  # the version served a blend: the same ARIMA stage, the same weight
            from .blend import Arima, apply

            contained = apply(staging.path, contained, Arima.from_dict(record.blend["arima"]),
                              float(record.blend["weight"]), raw, features=features, targets=targets, horizon=horizon,
                              window=window, transform=transform.kind, floor=float(np.std(raw[:, list(features).index(
                                  targets[0])])), floor_is="the std of the target in the inputs checked", seed=seed)
            metrics["blend"] = {"kind": "arima", **record.blend, "fitted_on": f"as recorded in {rebuilt_from}"}
        calibration: dict[str, Any] = {}
        if dataset is not None:
            add_streamed(metrics, dataset, contained.y_stream)
            if "blend" in metrics:
                metrics["blend"]["network_streamed"] = streamed_score(dataset, network_stream)
            cal, metrics["intervals"], _ = calibrate(
                dataset, contained.y_stream, intervals, name=name or out.resolve().name, features=list(features),
                targets=list(targets), season=season, metrics=metrics)
            calibration = cal.to_dict() if cal is not None else {}
        elif record is not None:
            calibration = dict(record.calibration)  # the served model's intervals, as calibrated when it was made
        graphs = dict(contained.exported.graphs)
        if "ort" in formats:
            from .ort_format import write_ort

            graphs.update(write_ort(staging.path, {k: graphs[k] for k in ("step", "sequence")}))
        if path.suffix.lower() in (".h5", ".hdf5"):
            model.save(staging.path / publish.KERAS_FILE)  # a real .keras file, converted from the legacy format
        else:
            shutil.copyfile(path, staging.path / publish.KERAS_FILE)
        manifest = staging.manifest(
            contained.exported,
            graphs=graphs,
            name=name or out.resolve().name,
            cell=stack.cell,
            layers=len(stack.rnn),
            units=stack.units,
            layer_units=stack.layer_units,
            features=list(features),
            targets=list(targets),
            window=window,
            horizon=horizon,
            normalization=normalization,
            metrics=metrics,
            training={"exported_by": "eddy export", "keras_file": str(path), "seed": seed, **source},
            io="raw",
            calibration=calibration,
            target_transform=transform.kind,
        )
        version_dir = staging.publish(manifest)
    if log is not None:
        log(f"exported {path} as {manifest.cell} {manifest.layers}x{manifest.units}")
    return ExportOutcome(version_dir, manifest, unscaled, rebuilt_from or None)


class _ScaledInputs:
    """``predict`` on normalised windows for a model whose first layer normalises raw ones."""

    def __init__(self, model: Any, norm: Normalization) -> None:
        self._model, self._norm = model, norm

    def predict(self, x: np.ndarray, verbose: int = 0) -> np.ndarray:
        raw = np.asarray(x, np.float64) * self._norm.input_std + self._norm.input_mean
        return forward(self._model, raw.astype(np.float32))


def _normalization(n_features: int, n_targets: int, input_mean: list[float] | None, input_std: list[float] | None,
                   target_mean: list[float] | None, target_std: list[float] | None) -> Normalization:
    """The model's own scaling: the given statistics (one value per column, or one for all), else identity."""
    def column(values: list[float] | None, n: int, flag: str, default: float) -> list[float]:
        if values is None:
            return [default] * n
        if len(values) not in (1, n):
            raise DataError(f"{flag}: the model has {n} column(s), {len(values)} value(s) given")
        if not all(np.isfinite(values)) or (flag.endswith("std") and any(v <= 0 for v in values)):
            raise DataError(f"{flag}: values must be finite{' and positive' if flag.endswith('std') else ''}")
        return [float(v) for v in values] * (n if len(values) == 1 else 1)

    return Normalization(column(input_mean, n_features, "--input-mean", 0.0),
                         column(input_std, n_features, "--input-std", 1.0),
                         column(target_mean, n_targets, "--target-mean", 0.0),
                         column(target_std, n_targets, "--target-std", 1.0))


def _agree(path: Path, record: Any, where: str, given: dict[str, Any], *, scaling_given: bool) -> None:
    """Refuse flags that would change the served model an eddy-written file's record describes."""
    if scaling_given:
        raise DataError(f"{path}: its scaling and target transform come from {where}; drop --norm-identity, "
                        "--input-mean, --input-std, --target-mean and --target-std")
    recorded = {"--features": record.features, "--target": record.targets, "--window": record.window,
                "--horizon": record.horizon, "--semantics": record.semantics}
    for flag, value in given.items():
        if value is not None and value != recorded[flag]:
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            want = recorded[flag]
            raise DataError(f"{path}: {flag} {shown} differs from {where}, which says "
                            f"{' '.join(map(str, want)) if isinstance(want, list) else want}; drop {flag}")


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
