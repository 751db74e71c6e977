"""A classical filter inside the exported graph, blended with the networks where the validation rows say so.

A seasonal ARIMA (statsforecast's AutoARIMA, as in :mod:`eddy.trainer.classical`) is fitted on the training
rows and run as its *conditional* one-step recursion (the innovations form that its conditional-sum-of-squares
fit minimises, and that its Kalman filter converges to once it has seen the series' first rows):

    y_hat[t+1] = k + sum_i a_i * y[t+1-i] + sum_j theta_j * e[t+1-j],    e[t] = y[t] - y_hat[t]

where ``a`` is the fitted AR polynomial times the differencing polynomial (``(1 - B)^d (1 - B^S)^D``), ``theta``
the expanded MA polynomial, and ``k`` what the intercept or drift leaves after differencing. Until ``len(a)``
samples have been seen the forecast is the last sample and every error counts as 0 (the conditional start).
The served prediction is ``(1 - w) * networks + w * y_hat``, ``w`` from the two forecasts' errors on the validation
rows (:func:`choose_weight`: inverse-MSE weights, with the ARIMA fitted on the training rows); the served ARIMA has
those orders refitted on the training and validation rows, as the classical baselines are fitted.

The recursion is a graph stage composed after the self-contained graphs (:func:`add_stage`), with three state
tensors: the last ``len(a)`` samples of the target (newest first), the last ``len(theta)`` errors and a sample
count capped at ``len(a)``; it computes in float64. The step graph runs one update, the sequence graph the same
update in a ``Scan`` over the chunk's samples, so every chunking computes the same recursion; :func:`reference` is
its numpy twin. This module needs statsforecast (the ``train`` extra) only to fit.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eddy.runtime.core.layout import STATE_OUT_SUFFIX
from eddy.runtime.core.manifest import FORMAT, GraphSpec, StateSpec, sha256_file

from . import _onnx
from .graph_io import metadata, set_metadata
from .self_contained import RTOL, SelfContained, check, stream_raw
from .windows import Dataset

__all__ = ["Arima", "add_stage", "applies", "apply", "blend", "choose_weight", "fit_arima", "make_blended", "reference",
           "state"]

Y_STATE = "arima_y"  # the last len(a) samples of the target, newest first, [A]
E_STATE = "arima_e"  # the last len(theta) one-step errors, newest first, [Q]
N_STATE = "arima_n"  # samples seen, capped at len(a), [1]
MAX_MA_ROOT = 0.995  # the largest |inverse root| of the (invertible form of the) MA polynomial the recursion accepts:
# the start and a rounding error in the errors' buffer fade as this power of the steps (0.995: to 1e-6 in 2,800 steps;
# an MA root on the unit circle keeps them, and the drift grows without bound over a long stream: no blend then)
_P = "eddy_blend/"  # prefix of every name the stage adds


@dataclass(frozen=True)
class Arima:
    """A fitted ARIMA as its one-step recursion: ``y_hat = k + a . y_past + theta . e_past`` (newest first)."""

    k: float
    a: tuple[float, ...]  # at least one (a zero pads an ARIMA without AR or differencing)
    theta: tuple[float, ...]  # at least one (a zero pads an ARIMA without MA)
    model: str  # statsforecast's name for it, e.g. "ARIMA(2,1,2)(0,1,1)[12]"
    order: tuple[int, ...]  # statsforecast's arma: (p, q, P, Q, S, d, D)
    terms: tuple[str, ...]  # "intercept" and/or "drift" when fitted with them

    @classmethod
    def from_fitted(cls, fitted: dict[str, Any]) -> Arima:
        """From a fitted statsforecast ARIMA's ``model_`` dict."""
        from statsforecast.arima import arima_string

        m = fitted["model"]
        ar = np.convolve(np.r_[1.0, -np.asarray(m["phi"], float)], np.r_[1.0, -np.asarray(m["delta"], float)])
        a, theta = _trim(-ar[1:]), _trim(_invertible(np.asarray(m["theta"], float)))
        coef = fitted["coef"]
        c, b = float(coef.get("intercept", 0.0)), float(coef.get("drift", 0.0))
        total = float(a.sum())
        if b and abs(1.0 - total) > 1e-9:  # R's and statsforecast's rule: drift only with one difference
            raise ValueError("an ARIMA with drift and without differencing has no constant one-step recursion")
        k = c * (1.0 - total) + b * float(np.sum(np.arange(1, len(a) + 1) * a))
        return cls(k=k, a=tuple(map(float, a)), theta=tuple(map(float, theta)), model=str(arima_string(fitted)).strip(),
                   order=tuple(int(v) for v in fitted["arma"]), terms=tuple(t for t in ("intercept", "drift") if t in coef))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arima:
        """From :meth:`to_dict`'s form (the manifest's ``metrics.blend.arima``)."""
        return cls(k=float(d["k"]), a=tuple(d["a"]), theta=tuple(d["theta"]), model=d["model"],
                   order=tuple(d["order"]), terms=tuple(d["terms"]))

    @property
    def ma_root(self) -> float:
        """The largest modulus of the MA polynomial's inverse roots (below 1: invertible)."""
        roots = np.roots(np.r_[1.0, self.theta]) if any(self.theta) else np.zeros(1)
        return float(np.max(np.abs(roots)))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "ma_root": self.ma_root, "order": list(self.order), "terms": list(self.terms), "k": self.k,
                "a": list(self.a), "theta": list(self.theta)}


def _invertible(theta: np.ndarray) -> np.ndarray:
    """The MA coefficients with every inverse root outside the unit circle replaced by its reciprocal conjugate: the
    invertible form with the same autocorrelations, the one a Kalman filter's one-step forecasts converge to (a
    maximum-likelihood fit may land on either form; only the invertible one's recursion forgets its start)."""
    if not np.any(theta):
        return theta
    roots = np.roots(np.r_[1.0, theta])
    outside = np.abs(roots) > 1.0
    if not outside.any():
        return theta
    roots[outside] = 1.0 / np.conj(roots[outside])
    return np.real(np.poly(roots))[1:]


def _trim(v: np.ndarray) -> np.ndarray:
    """``v`` without trailing zeros, at least one element."""
    nz = np.flatnonzero(v)
    return v[: nz[-1] + 1] if len(nz) else np.zeros(1)


def fit_arima(y: np.ndarray, season: int | None, like: Arima | None = None) -> Arima:
    """AutoARIMA on ``y`` ``[N]`` (season as :func:`eddy.trainer.classical.season_length` gives it), or, with
    ``like``, an ARIMA of ``like``'s orders and terms refitted on ``y``. Raises what statsforecast raises."""
    from statsforecast import models as sf

    from .classical import _quiet, season_length

    m = season_length("auto_arima", season)
    if like is None:
        model = sf.AutoARIMA(season_length=m)
    else:
        p, q, sp, sq, s, d, sd = like.order
        model = sf.ARIMA(order=(p, d, q), seasonal_order=(sp, sd, sq), season_length=max(s, 1),
                         include_mean="intercept" in like.terms, include_drift="drift" in like.terms)
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        model.fit(np.asarray(y, np.float64))
    return Arima.from_fitted(model.model_)


def reference(arima: Arima, y: np.ndarray) -> np.ndarray:
    """The float64 recursion over ``y`` ``[T]`` from a stream's start: ``[T]``, entry t forecasts ``y[t + 1]``."""
    a, theta = np.asarray(arima.a), np.asarray(arima.theta)
    ys, es = np.zeros(len(a)), np.zeros(len(theta))
    f, n, out = 0.0, 0, np.empty(len(y))
    for t, v in enumerate(np.asarray(y, np.float64)):
        e = v - f if n >= len(a) else 0.0
        ys, es = np.r_[v, ys[:-1]], np.r_[e, es[:-1]]
        n = min(n + 1, len(a))
        f = arima.k + a @ ys + theta @ es if n >= len(a) else v
        out[t] = f
    return out


def blend(network: np.ndarray, arima: np.ndarray, w: float) -> np.ndarray:
    """The served prediction: ``(1 - w) * network + w * arima``."""
    return (1.0 - w) * np.asarray(network, np.float64) + w * np.asarray(arima, np.float64)


def choose_weight(network: np.ndarray, arima: np.ndarray, actual: np.ndarray) -> tuple[float, dict[str, float]]:
    """The ARIMA's weight from the two forecasts' errors on the validation rows: inverse-MSE weighting (Bates and
    Granger 1969), ``w = mse_network / (mse_network + mse_arima)``, which leans toward the better forecaster and
    toward equal weights the closer the two are (short validation parts rank them noisily: choosing the best weight
    on a grid there loses on the test rows of the benchmark series, see docs/benchmarks.md). Returns ``w`` and the
    validation RMSE of the networks, the ARIMA and the blend."""
    actual = np.asarray(actual, np.float64)

    def mse(pred: np.ndarray) -> float:
        return float(np.mean((np.asarray(pred, np.float64) - actual) ** 2))

    m_net, m_arima = mse(network), mse(arima)
    w = m_net / (m_net + m_arima) if m_net + m_arima > 0 else 0.5
    return w, {"networks": m_net**0.5, "arima": m_arima**0.5, "blend": mse(blend(network, arima, w)) ** 0.5}


def state(arima: Arima) -> list[StateSpec]:
    """The stage's state tensors (after the wrapped graph's)."""
    return [StateSpec(Y_STATE, [len(arima.a)]), StateSpec(E_STATE, [len(arima.theta)]), StateSpec(N_STATE, [1])]


def add_stage(model: onnx.ModelProto, kind: str, arima: Arima, w: float, target_feature: int) -> onnx.ModelProto:
    """A copy of the self-contained ``kind`` graph (``"step"`` or ``"sequence"``) whose ``y`` is the blend.

    The target is feature ``target_feature`` of ``x``; the stage's states (:func:`state`) follow the graph's
    own in the inputs and outputs. The recursion and the blend are computed in float64 inside the graph (the
    states stay float32, the samples are float32 already): with a unit root and an MA root near 1 float32
    arithmetic drifts by more than the parity limit over a long stream."""
    if kind not in ("step", "sequence"):
        raise ValueError(f"kind must be 'step' or 'sequence', got {kind!r}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    net_y = _P + "y_network"
    for node in g.node:
        node.output[:] = [net_y if o == "y" else o for o in node.output]
    y_info = next(o for o in g.output if o.name == "y")
    batch = y_info.type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_param or batch.dim_value or "batch"
    doubles = (("a", np.asarray(arima.a)[:, None]), ("theta", np.asarray(arima.theta)[:, None]), ("k", [arima.k]),
               ("w", [w]), ("w_net", [1.0 - w]), ("zero_d", [0.0]))
    g.initializer.extend(numpy_helper.from_array(np.asarray(v, np.float64), _P + n) for n, v in doubles)
    g.initializer.extend(numpy_helper.from_array(np.asarray(v, np.float32), _P + n)
                         for n, v in (("n_full", [len(arima.a)]), ("one", [1.0])))
    g.initializer.extend(numpy_helper.from_array(np.asarray(v, np.int64), _P + n)
                         for n, v in (("target", [target_feature]), ("s0", [0]), ("s1", [-1]), ("ax", [1])))
    b = _Nodes()
    v = b.op("Gather", ["x", _P + "target"], axis=-1)  # [B, (T,) 1] float32
    sizes = {s.name: s.shape[0] for s in state(arima)}  # state name -> length
    if kind == "step":
        f = _update(b, v, Y_STATE, E_STATE, N_STATE)
    else:
        body = _Nodes(_P + "s/")
        names = [_P + "s/" + s for s in sizes]
        v_t = _P + "s/v"
        f_t = _update(body, v_t, *names)
        body.op("Identity", [f_t], out=_P + "s/f_out")
        body_graph = helper.make_graph(
            body.nodes, "arima_step",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch_dim, k]) for n, k in zip(names, sizes.values())]
            + [helper.make_tensor_value_info(v_t, TensorProto.FLOAT, [batch_dim, 1])],
            [helper.make_tensor_value_info(n + STATE_OUT_SUFFIX, TensorProto.FLOAT, [batch_dim, k])
             for n, k in zip(names, sizes.values())]
            + [helper.make_tensor_value_info(_P + "s/f_out", TensorProto.DOUBLE, [batch_dim, 1])])
        b.nodes.append(helper.make_node("Scan", [*sizes, v], [*(n + STATE_OUT_SUFFIX for n in sizes), _P + "f_seq"],
                                        name=_P + "Scan", body=body_graph, num_scan_inputs=1,
                                        scan_input_axes=[1], scan_output_axes=[1]))
        f = _P + "f_seq"  # [B, T, 1] float64
    net = b.op("Cast", [net_y], to=TensorProto.DOUBLE)
    mixed = b.op("Add", [b.op("Mul", [net, _P + "w_net"]), b.op("Mul", [f, _P + "w"])])
    b.op("Cast", [mixed], out="y", to=TensorProto.FLOAT)
    g.node.extend(b.nodes)
    g.input.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch_dim, k]) for n, k in sizes.items())
    g.output.extend(helper.make_tensor_value_info(n + STATE_OUT_SUFFIX, TensorProto.FLOAT, [batch_dim, k])
                    for n, k in sizes.items())
    onnx.checker.check_model(out)
    return out


def _update(b: _Nodes, v: str, ys: str, es: str, n: str) -> str:
    """One step of the recursion on the sample ``v`` ``[B, 1]`` with states ``ys, es, n``; writes ``<state>_out`` and
    returns the new forecast's name (``[B, 1]`` float64). The forecast of ``v`` is recomputed from the states
    it was made from (the same float64 ops on the same values, so the same bits), which spares a state for it.
    Names the constants of :func:`add_stage` (outer scope)."""
    def forecast(y_buf: str, e_buf: str) -> str:
        y_d, e_d = (b.op("Cast", [t], to=TensorProto.DOUBLE) for t in (y_buf, e_buf))
        return b.op("Add", [b.op("Add", [b.op("MatMul", [y_d, _P + "a"]), b.op("MatMul", [e_d, _P + "theta"])]),
                            _P + "k"])

    def shift(buf: str, newest: str) -> str:  # [newest, buf[:-1]]; a one-element buffer keeps the newest only
        return b.op("Concat", [newest, b.op("Slice", [buf, _P + "s0", _P + "s1", _P + "ax"])], axis=1)

    v_d = b.op("Cast", [v], to=TensorProto.DOUBLE)
    made = b.op("GreaterOrEqual", [n, _P + "n_full"])  # a forecast of v was made (the buffer was full)
    e = b.op("Cast", [b.op("Where", [made, b.op("Sub", [v_d, forecast(ys, es)]), _P + "zero_d"])],
             to=TensorProto.FLOAT)
    ys_new = b.op("Identity", [shift(ys, v)], out=ys + STATE_OUT_SUFFIX)
    es_new = b.op("Identity", [shift(es, e)], out=es + STATE_OUT_SUFFIX)
    n_new = b.op("Min", [b.op("Add", [n, _P + "one"]), _P + "n_full"], out=n + STATE_OUT_SUFFIX)
    return b.op("Where", [b.op("GreaterOrEqual", [n_new, _P + "n_full"]), forecast(ys_new, es_new), v_d])


class _Nodes:
    """Nodes with unique names under ``prefix``."""

    def __init__(self, prefix: str = _P) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.prefix = prefix
        self._count = 0

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        self._count += 1
        out = out or f"{self.prefix}{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{self.prefix}{op_type}_{self._count}", **attrs))
        return out


def applies(features: Sequence[str], targets: Sequence[str], horizon: int) -> str | None:
    """Why the blend does not apply to a model with these columns and horizon, or None when it does."""
    if horizon != 1:
        return f"horizon {horizon} (the blend forecasts one step ahead)"
    if len(targets) != 1:
        return f"{len(targets)} targets (the blend forecasts one)"
    if targets[0] not in features:
        return f"the target {targets[0]!r} is not a feature (the ARIMA reads its past values)"
    return None


def make_blended(directory: Path, contained: SelfContained, dataset: Dataset, season: int | None,
                 *, window: int, transform: str, seed: int = 0,
                 log: Callable[[str], None] | None = None) -> tuple[SelfContained, dict[str, Any]]:
    """Fit, choose the weight and add the stage to the self-contained graphs in ``directory`` (or say why not).

    Returns the (possibly) blended export with its streamed predictions over the series, and the manifest's
    ``metrics.blend`` entry. The ARIMA for the choice is fitted on the training rows; the served one has its orders
    refitted on the training and validation rows (the rows the classical baselines are fitted on). The graphs are
    checked against :func:`reference` with :data:`eddy.trainer.self_contained.RTOL`, one step-graph call per sample
    and random chunks through the sequence graph (recorded as ``parity.blend``). Raises
    :class:`~eddy.trainer.errors.ParityError` if a graph strays beyond it."""
    started = time.perf_counter()
    series = dataset.series
    target_feature = list(series.features).index(series.targets[0])
    y = np.asarray(series.outputs[:, 0], np.float64)  # [N] the actual values, to score
    samples = np.asarray(series.inputs[:, target_feature], np.float32).astype(np.float64)  # [N] what the graph reads
    val = np.asarray(dataset.val_rows)  # rows predicted; the stream's answer for row r is its output at r - 1
    network = np.asarray(contained.y_stream[:, 0], np.float64)  # [N]

    def none(why: str) -> tuple[SelfContained, dict[str, Any]]:
        if log is not None:
            log(f"blend: none, {why}")
        return contained, {"kind": "none", "why": why, "seconds": round(time.perf_counter() - started, 3)}

    try:
        chooser = fit_arima(y[: dataset.rows["train"][1]], season)
    except Exception as e:  # statsforecast raises ValueError, LinAlgError, ... on short or degenerate series
        return none("no ARIMA could be fitted on the training rows: "
                    + f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": "))
    if chooser.ma_root > MAX_MA_ROOT:
        return none(f"the ARIMA fitted on the training rows, {chooser.model}, has an MA root of modulus "
                    f"{chooser.ma_root:.4f} (above {MAX_MA_ROOT}): its one-step recursion would not forget its start "
                    "or its rounding")
    w, scores = choose_weight(network[val - 1], reference(chooser, samples)[val - 1], y[val])
    entry: dict[str, Any] = {"kind": "arima", "weight": w, "validation_rmse": scores, "chosen_with": chooser.model}
    if log is not None:
        log(f"blend: validation RMSE networks {scores['networks']:.4g}, {chooser.model} (fitted on the training rows) "
            f"{scores['arima']:.4g} -> ARIMA weight {w:.3f} (blend {scores['blend']:.4g})")
    try:
        arima, refit = fit_arima(y[: dataset.rows["test"][0]], season, like=chooser), "training and validation rows"
    except Exception:  # the same orders did not converge on the longer rows: serve the one the weight was chosen with
        arima, refit = chooser, "training rows (the refit on the training and validation rows failed)"
    if arima.ma_root > MAX_MA_ROOT:  # the refit lost invertibility: serve the one the weight was chosen with
        arima, refit = chooser, (f"training rows (the refit on the training and validation rows has an MA root of "
                                 f"modulus {arima.ma_root:.4f})")
    blended = apply(directory, contained, arima, w, series.inputs, features=series.features, targets=series.targets,
                    horizon=dataset.horizon, window=window, transform=transform,
                    floor=float(np.std(y[: dataset.rows["train"][1]])), seed=seed)
    entry.update({"arima": arima.to_dict(), "fitted_on": refit,
                  "seconds": round(time.perf_counter() - started, 3),
                  "how": "(1 - weight) x networks + weight x the ARIMA's conditional one-step recursion in the "
                         "graph; weight = MSE_networks / (MSE_networks + MSE_ARIMA) on the validation rows, the "
                         "networks streamed, the ARIMA fitted on the training rows"})
    return blended, entry


def apply(directory: Path, contained: SelfContained, arima: Arima, w: float, raw_inputs: np.ndarray, *,
          features: Sequence[str], targets: Sequence[str], horizon: int, window: int, transform: str, floor: float,
          floor_is: str = "the training rows' std", seed: int = 0) -> SelfContained:
    """Add the stage of ``arima`` with weight ``w`` to the self-contained graphs in ``directory`` and check both
    against :func:`reference` over ``raw_inputs`` ``[N, F]`` (the series, or the inputs an export checks with):
    one step-graph call per sample and random chunks through the sequence graph, within
    :data:`eddy.trainer.self_contained.RTOL` of the larger of max |y| and ``floor`` (raw units; ``floor_is`` says what
    it is in the rule recorded as
    ``parity.blend``). Returns the blended export with its streamed predictions over ``raw_inputs``; raises
    :class:`~eddy.trainer.errors.ParityError` if a graph strays beyond the limit. ``eddy train --blend arima``
    and ``eddy export`` of a blended model's ``model.keras`` (its record carries ``arima`` and ``w``) both call it."""
    target_feature = list(features).index(targets[0])
    x = np.asarray(raw_inputs, np.float64)  # [N, F]
    samples = x[:, target_feature].astype(np.float32).astype(np.float64)  # [N] what the graph reads
    network = np.asarray(contained.y_stream[:, 0], np.float64)  # [N]
    exported = contained.exported
    state_specs = list(exported.state) + state(arima)
    graphs: dict[str, GraphSpec] = dict(exported.graphs)
    for kind in ("step", "sequence"):
        path = directory / graphs[kind].file
        proto = add_stage(onnx.load(path), kind, arima, w, target_feature)
        set_metadata(proto, {**{p.key: p.value for p in proto.metadata_props},
                             **metadata(features=features, targets=targets, horizon=horizon, window=window,
                                        state=state_specs, transform=transform, graph=kind, fmt=FORMAT),
                             "eddy.blend": json.dumps({"kind": "arima", "weight": w, "model": arima.model})})
        onnx.save(proto, path)
        graphs[kind] = GraphSpec(file=path.name, sha256=sha256_file(path), ops=sorted(_onnx.count_ops(proto.graph).total))
    want = blend(network, reference(arima, samples), w)[:, None]  # [N, 1]: the float64 stage after the float32 networks
    limit = RTOL * max(float(np.max(np.abs(want), initial=0.0)), floor)
    figures: dict[str, Any] = {"rule": f"|graph - float64 blend of the network graph's output| <= {RTOL:g} * max(max "
                                       f"|y|, {floor_is}), raw units; figures are error / limit",
                               "limit": limit, "steps": int(len(x))}
    y_stream = stream_raw(directory / graphs["step"].file, state_specs, x)  # [N, 1]
    figures["chained_step"] = check("blend chained_step", y_stream, want, limit)
    rng = np.random.default_rng(seed)
    y_chunks, _ = _onnx.run_chunks(_onnx.session(directory / graphs["sequence"].file), state_specs,
                                   x[None].astype(np.float32), iter(lambda: int(rng.integers(1, 2 * window + 1)), None))
    figures["chunked_sequence"] = check("blend chunked_sequence", y_chunks[0], want, limit)
    parity = {**exported.parity, "blend": figures}
    return SelfContained(dataclasses.replace(exported, graphs=graphs, state=state_specs, parity=parity), y_stream)

