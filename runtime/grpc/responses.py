"""Data-plane results -> eddy.v1 response messages: model listing, metadata, session state, Predict."""

from __future__ import annotations

import json
from typing import Any

from eddy.v1 import inference_pb2 as pb

from ..core.live import LiveFigures
from ..core.model import Model
from ..serving.dataplane import Prediction, SessionState
from .tensors import Encoding, array_to_tensor

__all__ = ["live_accuracy", "list_models_response", "model_metadata", "predict_response", "session_state"]


def list_models_response(versions: dict[str, list[int]]) -> pb.ListModelsResponse:
    """``{name: [versions...]}`` -> ``ListModelsResponse`` (sorted by name)."""
    return pb.ListModelsResponse(models=[
        pb.ModelVersions(name=name, versions=sorted(vs), latest=max(vs))
        for name, vs in sorted(versions.items()) if vs
    ])


def session_state(s: SessionState) -> pb.SessionState:
    """``SessionState`` for ``GetSessionState`` / ``DeleteSession``."""
    return pb.SessionState(session_id=s.session_id, model=s.model, version=s.version, position=s.position,
                           state=s.state,
                           live=live_accuracy(s.live, s.model, s.version, s.session_id) if s.live else None)


def live_accuracy(f: LiveFigures, model: str, version: int, session_id: str = "") -> pb.LiveAccuracy:
    """``LiveAccuracy`` for ``GetLiveAccuracy`` and ``SessionState.live``."""
    ref = f.reference
    return pb.LiveAccuracy(model=model, version=version, session_id=session_id, actuals=f.actuals, window=f.window,
                           rmse=f.rmse, mae=f.mae, error_ratio=f.error_ratio or 0.0,
                           coverage={f"{k:g}": v for k, v in f.coverage.items()}, drift=f.drift, cusum=list(f.cusum),
                           test_rmse=ref.get("rmse") or {},
                           test_coverage={f"{k:g}": v for k, v in (ref.get("coverage") or {}).items()})


def predict_response(p: Prediction, encoding: Encoding) -> pb.PredictResponse:
    """``PredictResponse``, outputs in the request's encoding."""
    return pb.PredictResponse(model=p.model, version=p.version, outputs=array_to_tensor(p.y, encoding),
                              states=p.states)


def model_metadata(model: Model, versions: list[int]) -> pb.ModelMetadata:
    """``ModelMetadata`` for one served model version; ``versions``: all versions served under its name."""
    m = model.manifest
    return pb.ModelMetadata(
        name=m.name,
        version=m.version,
        versions=sorted(versions),
        cell=m.cell,
        layers=m.layers,
        units=m.units,
        features=m.features,
        targets=m.targets,
        window=m.window,
        horizon=m.horizon,
        state=[pb.StateTensor(name=s.name, shape=s.shape) for s in m.state],
        manifest_json=json.dumps(m.to_dict(), sort_keys=True),
        metrics=_numeric_leaves(m.metrics),
        parity=_numeric_leaves(m.parity),
    )


def _numeric_leaves(tree: Any, prefix: str = "") -> dict[str, float]:
    """``{"a": {"b": 1.5}, "c": "x"}`` -> ``{"a.b": 1.5}`` (numbers only; bools and text dropped)."""
    if isinstance(tree, dict):
        out: dict[str, float] = {}
        for k, v in tree.items():
            out.update(_numeric_leaves(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix[:-1]: float(tree)}
    return {}
