"""One training run: data -> fit -> test metrics -> export + parity -> version directory.

Importing this module is cheap; tensorflow is imported by :func:`train` only
after the data has been loaded and checked, so bad input fails fast.
"""

from __future__ import annotations

import platform
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import InvalidInput
from runtime.manifest import Manifest, sha256_file, write_manifest

from . import store
from .config import TrainConfig
from .data import BUNDLED_CSV, Dataset, Series, bundled_series, load_csv, make_dataset, synthetic_series
from .errors import DataError

__all__ = ["KERAS_FILE", "PARITY_STEPS", "TrainResult", "load_series", "regression_metrics", "resolve_output", "train"]

KERAS_FILE = "model.keras"
PARITY_STEPS = 5000  # longest sequence the chained parity checks run (caps export time on long series)
_VERSIONED = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy", "eddy")


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    version_dir: Path  # models/<name>/<version>
    manifest: Manifest
    train_seconds: float  # model.fit wall time
    export_seconds: float  # conversion and parity checks


def load_series(config: TrainConfig) -> Series:
    """The series ``config`` asks for: a CSV file, the synthetic sine or the bundled data set."""
    if config.synthetic:
        series = synthetic_series()  # a fixed data set; --seed drives training only
        for col in (config.features or []) + (config.targets or []):
            if col not in series.features:
                raise DataError(f"synthetic data: unknown column {col!r} (columns: {', '.join(series.features)})")
        return series
    if config.data is not None:
        return load_csv(config.data, config.features, config.targets)
    if config.features is not None or config.targets is not None:
        return load_csv(BUNDLED_CSV, config.features, config.targets, name="sunspots", source="bundled")
    return bundled_series()


def resolve_output(config: TrainConfig, series: Series) -> tuple[str, Path]:
    """Model name and model directory: ``--name``/``--out`` if given, else from each other or the data set."""
    if config.out is not None:
        return config.name or Path(config.out).resolve().name or series.name, Path(config.out)
    name = config.name or series.name
    return name, Path("models") / name


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, MAE and RMSE over every element of two equally shaped arrays."""
    err = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    mse = float(np.mean(err**2))
    return {"mse": mse, "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(mse))}


def train(config: TrainConfig, log: Callable[[str], None] | None = print) -> TrainResult:
    """Run ``config`` end to end and publish a new model version.

    Raises ``ValueError`` for an invalid config, :class:`~trainer.errors.DataError`
    for unusable data (before tensorflow is imported),
    :class:`~trainer.errors.TrainingError` if training diverges and
    :class:`~trainer.errors.ExportError` / :class:`~trainer.errors.ParityError`
    if the export fails; in every case nothing is left in the model directory.
    """
    config.validate()
    series = load_series(config)
    dataset = make_dataset(series, config.window, config.horizon, config.split)
    name, model_dir = resolve_output(config, series)
    if model_dir.exists() and not model_dir.is_dir():
        raise InvalidInput(f"{model_dir}: the output path exists and is not a directory")
    seed = config.seed if config.seed is not None else secrets.randbelow(2**31)

    from . import export as export_mod  # tensorflow from here on
    from . import model as model_mod

    model_mod.set_seed(seed)
    model = model_mod.build_model(config, len(series.features), len(series.targets))
    started = time.perf_counter()
    history = model_mod.fit(model, dataset, config, log)
    train_seconds = time.perf_counter() - started

    y_pred = dataset.denormalise_targets(model.predict(dataset.x_test, verbose=0))  # [n_test, O]
    metrics = _test_metrics(dataset, y_pred)

    with store.staging_dir(model_dir) as staging:
        started = time.perf_counter()
        sequence = dataset.normalised_inputs()[:PARITY_STEPS]  # [T, F]
        exported = export_mod.export_model(model, staging, dataset.x_test, sequence, seed=seed)
        export_seconds = time.perf_counter() - started
        model.save(staging / KERAS_FILE)
        manifest = Manifest(
            name=name,
            version=0,  # set by finalize once the version number is claimed
            cell=config.cell,
            layers=config.layers,
            units=config.units,
            features=list(series.features),
            targets=list(series.targets),
            window=config.window,
            horizon=config.horizon,
            state=exported.state,
            normalization=dataset.normalization,
            graphs=exported.graphs,
            opset=export_mod.OPSET,
            parity=exported.parity,
            metrics=metrics,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            versions=_library_versions(),
            training=_training_record(config, dataset, seed, history, train_seconds, export_seconds),
            files={KERAS_FILE: sha256_file(staging / KERAS_FILE)},
        )

        def finalize(directory: Path, version: int) -> None:
            manifest.version = version
            write_manifest(directory, manifest)

        version_dir, _ = store.publish(staging, model_dir, finalize)
    return TrainResult(version_dir, manifest, train_seconds, export_seconds)


def _test_metrics(dataset: Dataset, y_pred: np.ndarray) -> dict[str, Any]:
    """Test-set metrics in raw units, next to the persistence (last value) baseline."""
    model = regression_metrics(dataset.y_test_raw, y_pred)
    naive = regression_metrics(dataset.y_test_raw, dataset.last_test_raw)
    per_target = {
        col: {
            **regression_metrics(dataset.y_test_raw[:, j], y_pred[:, j]),
            **{f"persistence_{k}": v for k, v in regression_metrics(
                dataset.y_test_raw[:, j], dataset.last_test_raw[:, j]).items()},
        }
        for j, col in enumerate(dataset.series.targets)
    }
    return {
        "split": "test",
        "windows": int(len(dataset.y_test_raw)),
        **model,
        **{f"persistence_{k}": v for k, v in naive.items()},
        "per_target": per_target,
    }


def _training_record(
    config: TrainConfig,
    dataset: Dataset,
    seed: int,
    history: dict[str, Any],
    train_seconds: float,
    export_seconds: float,
) -> dict[str, Any]:
    series = dataset.series
    return {
        **config.to_dict(),
        "seed": seed,
        "loss": "mse",
        "optimizer": "adam",
        "data": {"source": series.source, "name": series.name, "path": _portable(series.path), "rows": len(series)},
        "split_rows": {k: list(v) for k, v in dataset.rows.items()},
        "windows": {"train": len(dataset.x_train), "val": len(dataset.x_val), "test": len(dataset.x_test)},
        "parity_steps": min(len(series), PARITY_STEPS),
        "history": {"loss": history["loss"], "val_loss": history["val_loss"]},
        "epochs_run": history["epochs_run"],
        "best_epoch": history["best_epoch"],
        "train_seconds": round(train_seconds, 3),
        "export_seconds": round(export_seconds, 3),
    }


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


def _portable(path: str | None) -> str | None:
    """The bundled CSV as a package-relative path, so manifests do not embed this machine's layout."""
    if path is not None and Path(path).resolve() == BUNDLED_CSV.resolve():
        return BUNDLED_CSV.relative_to(BUNDLED_CSV.parents[2]).as_posix()
    return path
