"""One training run: data -> fit -> test metrics -> export + parity -> report -> version directory.

Importing this module is cheap; tensorflow is imported by :func:`train` only
after the data has been loaded and checked, so bad input fails fast.

Everything (graphs, ``model.keras``, int8 graphs, ``report.json``,
``report.png``, ``manifest.json``) is written into a staging directory that
is renamed into place only when complete (:mod:`eddy.trainer.publish`).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eddy.runtime.core.calibration import level_name
from eddy.runtime.core.errors import InvalidInput
from eddy.runtime.core.manifest import Manifest

from . import publish
from .calibrate import calibrate
from .config import TrainConfig
from .errors import DataError
from .gradients import GradientHealth, assess
from .parity import PARITY_STEPS
from .series import BUNDLED_CSV, Series, bundled_series, load_csv, synthetic_series
from .transform import Transform, applicable_kinds
from .windows import Dataset, make_dataset

__all__ = ["TrainResult", "build_report", "load_series", "resolve_output", "train"]


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    version_dir: Path  # models/<name>/<version>
    manifest: Manifest
    train_seconds: float  # model.fit wall time
    export_seconds: float  # conversion and parity checks
    gradient_health: GradientHealth  # exploded / vanished verdict and notes
    report: dict[str, Any]  # what report.json holds


def load_series(config: TrainConfig) -> Series:
    """The series ``config`` asks for: a CSV file, the synthetic sine or the bundled data set."""
    if config.synthetic:
        series = synthetic_series()  # a fixed data set; --seed drives training only
        for col in (config.features or []) + (config.targets or []):
            if col not in series.features:
                raise DataError(f"synthetic data: unknown column {col!r} (columns: {', '.join(series.features)})")
        return series
    if config.data is not None:
        return load_csv(config.data, config.features, config.targets, fill=config.fill)
    if config.features is not None or config.targets is not None:
        return load_csv(BUNDLED_CSV, config.features, config.targets, name="sunspots", source="bundled")
    return bundled_series()


def _kinds(config: TrainConfig, series: Series) -> list[str]:
    """The target transforms to train: the one asked for, or every applicable one for ``auto``."""
    if config.target_transform != "auto":
        return [config.target_transform]
    season = config.season if config.season and config.season >= config.horizon else None
    return applicable_kinds(series.features, series.targets, series.inputs, season)


def _transform(config: TrainConfig, series: Series, kind: str) -> Transform | None:
    """``kind`` for ``series``' columns (None for level); a delta kind whose target is not a feature is a DataError."""
    if kind == "level":
        return None
    try:
        return Transform.for_columns(kind, series.features, series.targets, season=config.season,
                                     horizon=config.horizon)
    except ValueError as e:
        raise DataError(f"{series.path or series.name}: {e}") from None


def _classical(config: TrainConfig, dataset: Dataset, log: Callable[[str], None] | None) -> dict[str, Any] | None:
    """The classical baselines' test forecasts (:mod:`eddy.trainer.classical`), or None with ``--baselines naive``."""
    if config.baselines != "classical":
        return None
    from .classical import classical_forecasts

    if log is not None:
        log("fitting the classical baselines (AutoETS, AutoARIMA, AutoTheta) on the rows before the test part")
    return classical_forecasts(dataset.series.outputs, dataset.rows["test"][0], dataset.test_rows, dataset.horizon,
                               config.season, log)


def _blend(config: TrainConfig, directory: Path, contained: Any, dataset: Dataset, kind: str, seed: int,
           log: Callable[[str], None] | None) -> tuple[Any, dict[str, Any]] | None:
    """``--blend arima`` (:mod:`eddy.trainer.blend`): the (possibly) blended export and ``metrics.blend``; None with
    ``--blend none``. A model the blend does not apply to, or whose ARIMA cannot be fitted, keeps the networks alone
    and says why in ``metrics.blend``."""
    if config.blend == "none":
        return None
    from .blend import applies, make_blended

    series = dataset.series
    why = applies(series.features, series.targets, config.horizon)
    if why is not None:
        return contained, {"kind": "none", "why": why}
    return make_blended(directory, contained, dataset, config.season, window=config.window, transform=kind, seed=seed,
                        log=log)


def resolve_output(config: TrainConfig, series: Series) -> tuple[str, Path]:
    """Model name and model directory: ``--name``/``--out`` if given, else from each other or the data set."""
    if config.out is not None:
        return config.name or Path(config.out).resolve().name or series.name, Path(config.out)
    name = config.name or series.name
    return name, Path("models") / name


def train(config: TrainConfig, log: Callable[[str], None] | None = print) -> TrainResult:
    """Run ``config`` end to end and publish a new model version.

    Raises ``ValueError`` for an invalid config, :class:`~eddy.trainer.errors.DataError`
    for unusable data (before tensorflow is imported),
    :class:`~eddy.trainer.errors.TrainingError` if training diverges and
    :class:`~eddy.trainer.errors.ExportError` / :class:`~eddy.trainer.errors.ParityError`
    if the export fails; in every case nothing is left in the model directory.
    """
    config.validate()
    series = load_series(config)
    candidates = {kind: make_dataset(series, config.window, config.horizon, config.split, _transform(config, series, kind))
                  for kind in _kinds(config, series)}  # kind -> Dataset; bad data fails here, before tensorflow
    dataset = next(iter(candidates.values()))
    if config.season:
        dataset.seasonal_test_raw(config.season)  # a season that does not fit the data fails before tensorflow
    name, model_dir = resolve_output(config, series)
    if model_dir.exists() and not model_dir.is_dir():
        raise InvalidInput(f"{model_dir}: the output path exists and is not a directory")
    seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    classical = _classical(config, dataset, log)

    from . import model as model_mod  # tensorflow from here on
    from .evaluate import add_streamed, evaluate, streamed_score, val_rmse
    from .onnx_export import export_model
    from .self_contained import make_self_contained
    from .tbptt import fit_streams, streamed_val_rmse

    started = time.perf_counter()

    def fit_one(dataset: Dataset, member_seed: int, gradients: bool = True,
                units: int = config.units) -> tuple[Any, dict[str, Any], float]:
        """One network of ``units`` from ``member_seed`` on ``dataset``: (model, history, validation RMSE in raw
        units); ``gradients=False``: tbptt skips measuring the gradient norms (only the first member's are reported)."""
        model_mod.set_seed(member_seed)
        m = model_mod.build_model(dataclasses.replace(config, units=units), len(series.features), len(series.targets))
        if config.training == "tbptt":
            h = fit_streams(m, dataset, config, log, gradients=gradients)
            return m, h, streamed_val_rmse(m, dataset)  # what a stream delivers on the validation rows
        h = model_mod.fit(m, dataset, config, log)
        return m, h, val_rmse(m, dataset)

    # auto compares one network of auto_units per candidate (every one from the same weights); when that is the
    # members' size, the winner is member 1, else member 1 is trained afterwards at --units
    chooser_units = min(config.auto_units, config.units) if len(candidates) > 1 else config.units
    chosen: dict[str, float] = {}  # kind -> validation RMSE (raw units)
    best: tuple[Any, Dataset, dict[str, Any]] | None = None
    for kind, candidate in candidates.items():
        if log is not None and len(candidates) > 1:
            log(f"target transform {kind}" + (f" (member 1 of {config.members})" if config.members > 1
                                              and chooser_units == config.units else "")
                + (f" (one network of {chooser_units} units)" if chooser_units != config.units else "") + ":")
        m_k, h_k, chosen[kind] = fit_one(candidate, seed, units=chooser_units)
        if best is None or chosen[kind] < chosen[best[1].kind]:
            best = (m_k, candidate, h_k)
    assert best is not None
    model, dataset, history = best
    if log is not None and len(candidates) > 1:
        log("target transform auto: validation RMSE " + ", ".join(f"{k} {v:.4g}" for k, v in chosen.items())
            + f" -> {dataset.kind}")
    first_val = chosen[dataset.kind]
    if chooser_units != config.units:
        if log is not None:
            log(f"member 1 of {config.members} (seed {seed}, {config.units} units, target transform {dataset.kind}):")
        model, history, first_val = fit_one(dataset, seed)
    ensemble: dict[str, Any] | None = None
    if config.members > 1:
        from .ensemble import describe, merge_weights

        models, member_val = [model], [first_val]
        for i in range(1, config.members):
            member_seed = (seed + i) % 2**32
            if log is not None:
                log(f"member {i + 1} of {config.members} (seed {member_seed}, target transform {dataset.kind}):")
            m_i, _, v_i = fit_one(dataset, member_seed, gradients=False)
            models.append(m_i)
            member_val.append(v_i)
        model = model_mod.build_model(dataclasses.replace(config, units=config.units * config.members),
                                      len(series.features), len(series.targets))
        model.set_weights(merge_weights([m.get_weights() for m in models], config.layers))
        merged_val = streamed_val_rmse(model, dataset) if config.training == "tbptt" else val_rmse(model, dataset)
        ensemble = {**describe(config.members, config.units, config.layers, config.cell),
                    "validation_rmse": {"members": member_val, "average": merged_val}}
        if log is not None:
            log(f"average of {config.members} members: validation RMSE {merged_val:.4g} (members "
                + ", ".join(f"{v:.4g}" for v in member_val) + ")")
    train_seconds = time.perf_counter() - started
    health = assess(history["loss"], history["grad_norm"], history["recurrent_grad_norm_per_layer"])
    y_pred, metrics = evaluate(model, dataset, config.season, classical)  # [n_test, O] raw, window metrics
    transform = dataset.transform or Transform("level", len(series.features))

    with publish.stage(model_dir) as staging:
        started = time.perf_counter()
        sequence = dataset.normalised_inputs()[:PARITY_STEPS]  # [T, F] model space: what the core graph reads
        core = export_model(model, staging.path, dataset.x_test, sequence, seed=seed)
        contained = make_self_contained(staging.path, core, transform, dataset.normalization, series.inputs,
                                        features=series.features, targets=series.targets, horizon=config.horizon,
                                        window=config.window, seed=seed)
        network_stream = contained.y_stream  # [N, O] the networks alone
        blended = _blend(config, staging.path, contained, dataset, transform.kind, seed, log)
        if blended is not None:
            contained, metrics["blend"] = blended
        exported = contained.exported
        add_streamed(metrics, dataset, contained.y_stream)
        if "blend" in metrics:
            metrics["blend"]["network_streamed"] = streamed_score(dataset, network_stream)
        metrics["target_transform"] = {"kind": dataset.kind, "validation_rmse": chosen, "units": chooser_units}
        if ensemble is not None:
            metrics["ensemble"] = ensemble
        calibration, metrics["intervals"], bands = calibrate(
            dataset, contained.y_stream, config.intervals, name=name, features=list(series.features),
            targets=list(series.targets), season=config.season, metrics=metrics)
        export_seconds = time.perf_counter() - started
        model.save(staging.path / publish.KERAS_FILE)
        graphs = dict(exported.graphs)
        quantization: dict[str, Any] | None = None
        if config.quantize == "int8":
            from .quantize import quantize_graphs

            raw = series.inputs[:PARITY_STEPS].astype("float32")  # [T, F]: the graphs take raw units
            extra, quantization = quantize_graphs(staging.path, exported.graphs, raw, exported.state)
            graphs.update(extra)
            metrics["int8"] = quantization
        if "ort" in config.formats:  # .ort twins of every graph written (float32, and int8 with --quantize)
            from .ort_format import write_ort

            graphs.update(write_ort(staging.path, dict(graphs)))
        manifest = staging.manifest(
            exported,
            graphs=graphs,
            name=name,
            cell=config.cell,
            layers=config.layers,
            units=config.units * config.members,  # an average of members is one wider stack (trainer/ensemble.py)
            layer_units=[config.units * config.members] * config.layers,
            features=list(series.features),
            targets=list(series.targets),
            window=config.window,
            horizon=config.horizon,
            normalization=dataset.normalization,
            metrics=metrics,
            training=_training_record(config, dataset, seed, history, health, train_seconds, export_seconds),
            io="raw",
            target_transform=dataset.kind,
            calibration=calibration.to_dict() if calibration is not None else {},
        )
        report = build_report(manifest, config, dataset, history, health, y_pred, quantization, contained.y_stream,
                              bands, classical)

        def write_report(directory: Path, manifest: Manifest) -> None:
            report["model"]["version"] = manifest.version
            _write_report(directory, report)

        version_dir = staging.publish(manifest, before=write_report)
    return TrainResult(version_dir, manifest, train_seconds, export_seconds, health, report)


def build_report(
    manifest: Manifest,
    config: TrainConfig,
    dataset: Dataset,
    history: dict[str, Any],
    health: GradientHealth,
    y_pred: np.ndarray,
    quantization: dict[str, Any] | None = None,
    y_stream: np.ndarray | None = None,
    bands: dict[str, np.ndarray] | None = None,
    classical: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The dict :func:`eddy.trainer.report.write_report` renders (``report.json``, ``report.png``).

    ``y_stream`` ``[N, O]``: the streamed predictions over the whole series (row t predicts t + horizon);
    ``bands``: the served interval bounds over the series, ``{"lower"|"upper": [L, N, O]}``;
    ``classical``: :func:`eddy.trainer.classical.classical_forecasts`' output for the test rows."""
    series, m = dataset.series, manifest.metrics
    served_rows = dataset.test_rows - dataset.horizon  # the output rows predicting the test rows
    levels = list(manifest.calibration.get("levels") or []) if bands is not None else []
    return {
        "model": {
            "name": manifest.name,
            "version": manifest.version,
            "cell": manifest.cell,
            "layers": manifest.layers,
            "units": manifest.units,
            "window": manifest.window,
            "horizon": manifest.horizon,
            "features": list(manifest.features),
            "targets": list(manifest.targets),
        },
        "config": config.to_dict(),
        "data": {
            "source": series.source,
            "name": series.name,
            "path": _portable(series.path),
            "rows": len(series),
            "time_column": series.time_column,
            "missing_filled": series.missing if config.fill in ("ffill", "interpolate") else 0,
            "rows_dropped": series.dropped_rows,
            "split_rows": {k: list(v) for k, v in dataset.rows.items()},
        },
        "history": {k: history[k] for k in (
            "epoch", "loss", "val_loss", "grad_norm", "recurrent_grad_norm", "recurrent_grad_norm_per_layer", "lr")},
        "best_epoch": history["best_epoch"],
        "gradient_health": health.to_dict(),
        "test": {**{k: m[k] for k in ("windows", "rmse", "mae", "per_target")},
                 **({"streamed": m["streamed"]} if "streamed" in m else {}),
                 **({"blend": m["blend"]} if "blend" in m else {}),  # --blend: the ARIMA, its weight, the networks' score
                 **({"intervals": m["intervals"]} if "intervals" in m else {})},
        "baselines": m["baselines"],
        "test_predictions": {
            "labels": [series.label(int(r)) for r in dataset.test_rows],
            "targets": list(series.targets),
            "actual": dataset.y_test_raw.tolist(),  # [n_test, O]
            "predicted": np.asarray(y_pred, np.float64).tolist(),  # [n_test, O] window predictions
            **({"streamed": np.asarray(y_stream, np.float64)[dataset.test_rows - dataset.horizon].tolist()}
               if y_stream is not None else {}),  # [n_test, O] what a served stream returned for the same rows
            **({"intervals": {level_name(lv): {"lower": np.asarray(bands["lower"][i], np.float64)[served_rows].tolist(),
                                               "upper": np.asarray(bands["upper"][i], np.float64)[served_rows].tolist()}
                              for i, lv in enumerate(levels)}}
               if bands is not None else {}),  # level -> [n_test, O] bounds a served stream returned for the same rows
            **({"classical": {k: np.asarray(f["predictions"], np.float64).tolist()
                              for k, f in classical.items() if "predictions" in f}}
               if classical else {}),  # model key -> [n_test, O] the classical baselines' forecasts
        },
        "parity": dict(manifest.parity),
        "quantization": quantization,
    }


def _write_report(directory: Path, report: dict[str, Any]) -> None:
    """``report.json`` and ``report.png`` via :mod:`eddy.trainer.report` (matplotlib, headless)."""
    from .report import write_report

    write_report(directory, report)


def _training_record(
    config: TrainConfig,
    dataset: Dataset,
    seed: int,
    history: dict[str, Any],
    health: GradientHealth,
    train_seconds: float,
    export_seconds: float,
) -> dict[str, Any]:
    series = dataset.series
    return {
        **config.to_dict(),
        "seed": seed,
        "loss": "mse",
        "optimizer": "adam",
        "data": {"source": series.source, "name": series.name, "path": _portable(series.path), "rows": len(series),
                 "time_column": series.time_column},
        "split_rows": {k: list(v) for k, v in dataset.rows.items()},
        "windows": {"train": len(dataset.x_train), "val": len(dataset.x_val), "test": len(dataset.x_test)},
        **({"streams": history["streams"]} if "streams" in history else {}),  # --training tbptt's layout
        "parity_steps": min(len(series), PARITY_STEPS),
        "history": {k: history[k] for k in ("loss", "val_loss", "grad_norm", "recurrent_grad_norm", "lr")},
        "gradient_health": health.to_dict(),
        "epochs_run": history["epochs_run"],
        "best_epoch": history["best_epoch"],
        "train_seconds": round(train_seconds, 3),
        "export_seconds": round(export_seconds, 3),
    }


def _portable(path: str | None) -> str | None:
    """The bundled CSV as a package-relative path, so manifests do not embed this machine's layout."""
    if path is not None and Path(path).resolve() == BUNDLED_CSV.resolve():
        return BUNDLED_CSV.relative_to(BUNDLED_CSV.parents[2]).as_posix()
    return path
