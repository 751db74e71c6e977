"""Classical forecasting baselines from statsforecast: AutoETS, AutoARIMA and AutoTheta, scored like the stream.

The forecaster's question after "does it beat persistence?" is "does it beat the classical methods I already
trust?". This module answers it on the same test rows, with the same one-step-at-a-time protocol as the
streamed score:

- each target column is forecast from its own past (univariate), with ``season_length`` = the run's
  ``--season`` (1 without one); above :data:`MAX_SEASON` AutoETS and AutoARIMA are fitted without a seasonal
  part (statsforecast's ETS allows none there, and a seasonal ARIMA with a season of 48 or 52 takes tens of
  minutes to select on a few thousand rows), AutoTheta keeps it (its seasonal decomposition is cheap);
- each model is fitted **once** on the rows before the test part (training and validation rows);
- for each test row ``r``, the fitted model is run over ``y[: r - horizon + 1]`` with its parameters fixed
  (statsforecast's ``forward``, no refit) and its ``horizon``-step forecast is the prediction of row ``r``:
  what it would have said with the data a served stream had seen.

RMSE and MAE are in raw units, next to the model's streamed score. A model that fails to fit (statsforecast
raises on some short or degenerate series) is recorded with its error instead of figures. statsforecast is
in the ``train`` extra and imported here only: the runtime never imports it.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["CLASSICAL", "LABELS", "MAX_SEASON", "classical_forecasts", "score_classical", "season_length"]

# manifest key -> statsforecast model class name
CLASSICAL: dict[str, str] = {"auto_ets": "AutoETS", "auto_arima": "AutoARIMA", "auto_theta": "AutoTheta"}
LABELS = {"auto_ets": "AutoETS", "auto_arima": "AutoARIMA", "auto_theta": "AutoTheta"}  # how reports name them
MAX_SEASON = 24  # above this season length AutoETS (statsforecast's limit, as R's ets) and AutoARIMA fit no season
_SEASONAL_ANY = ("auto_theta",)  # models that keep any season length


def classical_forecasts(y: np.ndarray, fit_rows: int, test_rows: np.ndarray, horizon: int, season: int | None,
                        log: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """One-step-protocol forecasts of every classical model (see the module docstring).

    ``y`` ``[N, O]`` raw targets; the models are fitted on ``y[:fit_rows]`` and predict each of ``test_rows``
    (``[n]``, all ``>= fit_rows``) from the rows up to ``horizon`` before it. Returns, per model key of
    :data:`CLASSICAL`, ``{"predictions": [n, O] float64, "model": description, "seconds": fit + forward
    time}``, or ``{"error": message}`` if it could not be fitted or produced a non-finite forecast.
    """
    from statsforecast import models as sf  # the train extra; imported only when a run scores baselines

    y = np.asarray(y, np.float64)
    rows = np.asarray(test_rows)  # forecast origins r - horizon + 1 may lie in the fitted rows (horizon > 1)
    out: dict[str, dict[str, Any]] = {}
    for key, cls in CLASSICAL.items():
        started = time.perf_counter()
        preds = np.empty((len(rows), y.shape[1]))  # [n, O]
        described = []
        try:
            for j in range(y.shape[1]):
                model = getattr(sf, cls)(season_length=season_length(key, season))
                with warnings.catch_warnings(), _quiet():
                    warnings.simplefilter("ignore")
                    model.fit(y[:fit_rows, j])
                    for i, r in enumerate(rows):
                        preds[i, j] = model.forward(y=y[: r - horizon + 1, j], h=horizon)["mean"][horizon - 1]
                described.append(_describe(model))
        except Exception as e:  # statsforecast raises ValueError, LinAlgError, ZeroDivisionError, ...
            out[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")}
            continue
        if not np.isfinite(preds).all():
            out[key] = {"error": "non-finite forecast"}
            continue
        out[key] = {"predictions": preds, "model": "; ".join(described), "seconds": time.perf_counter() - started}
        if log is not None:
            log(f"baseline {LABELS[key]}: {out[key]['model']} ({out[key]['seconds']:.1f} s)")
    return out


def season_length(key: str, season: int | None) -> int:
    """The ``season_length`` model ``key`` is fitted with for the run's ``season`` (see :data:`MAX_SEASON`)."""
    m = int(season) if season and season > 1 else 1
    return m if m <= MAX_SEASON or key in _SEASONAL_ANY else 1


def score_classical(forecasts: dict[str, dict[str, Any]], scored: Callable[[np.ndarray], dict[str, Any]],
                    season: int | None) -> dict[str, dict[str, Any]]:
    """The manifest's entries for :func:`classical_forecasts`' output: ``scored(predictions)`` (RMSE, MAE, MSE,
    per target) plus the fitted model's description, or the error; with the protocol named once per entry."""
    out = {}
    for key, f in forecasts.items():
        m = season_length(key, season)
        how = (f"statsforecast {_version()}, season_length {m}: fitted once on the rows before the test part, then "
               "forward over each test row's past with the fitted parameters (no refit)")
        if "error" in f:
            out[key] = {"error": f["error"], "how": how}
            continue
        entry = {**scored(f["predictions"]), "model": f["model"], "how": how, "seconds": round(f["seconds"], 3)}
        if season and m != season and season > 1:
            entry["note"] = f"fitted without a seasonal part: season {season} is above {MAX_SEASON}"
        out[key] = entry
    return out


def _describe(model: Any) -> str:
    """The fitted model's short name (e.g. ``ETS(M,Ad,M)``, ``ARIMA(1,1,0)(0,1,1)[12]``, ``Theta(OTM)``)."""
    fitted = getattr(model, "model_", None)
    if not isinstance(fitted, dict):
        return type(model).__name__
    if isinstance(fitted.get("method"), str):  # ETS names itself
        return fitted["method"]
    if "arma" in fitted:
        from statsforecast.arima import arima_string

        return str(arima_string(fitted)).strip()
    kind = fitted.get("modeltype")  # Theta's variant: STM, OTM, DSTM, DOTM
    return f"Theta({getattr(kind, 'name', kind)})" if kind is not None else type(model).__name__


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("statsforecast")
    except PackageNotFoundError:
        return "unknown"


class _quiet:
    """Silence statsforecast's and its dependencies' INFO logging during a fit."""

    def __enter__(self) -> None:
        self._level = logging.root.manager.disable
        logging.disable(logging.INFO)

    def __exit__(self, *exc: Any) -> None:
        logging.disable(self._level)
