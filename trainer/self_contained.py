"""Turn exported core graphs into self-contained ones (raw units in and out) and check them.

After :func:`eddy.trainer.onnx_export.export_model` has written the core graphs
(model space, checked against Keras), :func:`make_self_contained` wraps both
with the normalisation and the target transform (:mod:`eddy.trainer.graph_io`),
writes the ``metadata_props``, and checks the wrapped graphs against the
float64 transform around the core graph (one step-graph call per sample, and
random chunks through the sequence graph), with a limit relative to the
outputs' magnitude (the targets' std as the floor), recorded with its rule in
the manifest's parity figures. It also returns the wrapped step graph's output for every row
of the series: the streamed predictions a served stream returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from eddy.runtime.core.manifest import FORMAT, GraphSpec, Normalization, StateSpec, sha256_file

from . import _onnx
from .errors import ParityError
from .graph_io import WINDOW_STATE, metadata, set_metadata, window_semantics, wrap_raw
from .transform import Transform

if TYPE_CHECKING:
    from .onnx_export import ExportResult

__all__ = ["RTOL", "SelfContained", "check", "make_self_contained", "make_window_semantics", "stream_raw"]

RTOL = 1e-5  # wrapped graph vs the float64 transform: max error allowed per unit of output magnitude
# (the larger of max |output| and the targets' model-space std, which is the floor: raw units)


@dataclasses.dataclass(frozen=True)
class SelfContained:
    """The wrapped export and the streamed predictions over the series."""

    exported: ExportResult  # graphs (new hashes), state (with the transform's), parity (with "self_contained")
    y_stream: np.ndarray  # [T, O] raw: the step graph from zero state, one sample per call, row t predicts t + horizon


def make_self_contained(
    directory: Path,
    exported: ExportResult,
    transform: Transform,
    norm: Normalization,
    raw_inputs: np.ndarray,
    *,
    features: Sequence[str],
    targets: Sequence[str],
    horizon: int,
    window: int,
    seed: int = 0,
) -> SelfContained:
    """Wrap ``exported``'s graphs in ``directory`` in place; see the module docstring.

    ``raw_inputs`` ``[T, F]`` is the series the checks and the streamed
    predictions run over. Raises :class:`~eddy.trainer.errors.ParityError` if a
    wrapped graph strays beyond the tolerance.
    """
    x = np.asarray(raw_inputs, np.float64)  # [T, F]
    core_state = list(exported.state)
    state = core_state + transform.extra_state()
    u = ((transform.inputs(x) - norm.input_mean) / norm.input_std).astype(np.float32)  # [T, F] core inputs
    core_y, _ = _onnx.run_steps(_onnx.session(directory / exported.graphs["step"].file), core_state, u[None])
    want = transform.predictions(x, core_y[0] * np.asarray(norm.target_std) + norm.target_mean,
                                 rows=np.arange(len(x)))  # [T, O] float64

    graphs: dict[str, GraphSpec] = dict(exported.graphs)
    for kind in ("step", "sequence"):
        path = directory / exported.graphs[kind].file
        proto = wrap_raw(onnx.load(path), kind, transform, norm)
        set_metadata(proto, metadata(features=features, targets=targets, horizon=horizon, window=window, state=state,
                                     transform=transform.kind, graph=kind, fmt=FORMAT))
        onnx.save(proto, path)
        graphs[kind] = GraphSpec(file=path.name, sha256=sha256_file(path), ops=sorted(_onnx.count_ops(proto.graph).total))

    limit = RTOL * max(float(np.max(np.abs(want), initial=0.0)), float(np.max(norm.target_std)))
    figures: dict[str, Any] = {"rule": f"|graph - float64 transform of the core graph| <= {RTOL:g} * max(max |y|, "
                                       "target_std), raw units; figures are error / limit",
                               "limit": limit, "steps": int(len(x))}
    y_stream = stream_raw(directory / graphs["step"].file, state, x)  # [T, O]
    figures["chained_step"] = check("chained_step", y_stream, want, limit)
    rng = np.random.default_rng(seed)

    def lengths() -> Iterator[int]:
        while True:
            yield int(rng.integers(1, 2 * window + 1))

    seq = _onnx.session(directory / graphs["sequence"].file)
    y_chunks, _ = _onnx.run_chunks(seq, state, x[None].astype(np.float32), lengths())  # [1, T, O]
    figures["chunked_sequence"] = check("chunked_sequence", y_chunks[0], want, limit)
    parity = {**exported.parity, "self_contained": figures}
    return SelfContained(dataclasses.replace(exported, graphs=graphs, state=state, parity=parity), y_stream)


def stream_raw(step_file: Path, state: Sequence[StateSpec], x: np.ndarray) -> np.ndarray:
    """A self-contained step graph over raw ``x`` ``[T, F]`` from zero state, one call per sample: ``[T, O]``."""
    y, _ = _onnx.run_steps(_onnx.session(step_file), state, np.asarray(x, np.float32)[None])  # [1, T, O]
    return y[0]


def check(name: str, got: np.ndarray, want: np.ndarray, limit: float) -> float:
    """The max error as a fraction of ``limit`` (<= 1 passes); raises :class:`ParityError` above it."""
    err = float(np.max(np.abs(np.asarray(got, np.float64) - want), initial=0.0))
    if not err <= limit:  # also catches NaN
        raise ParityError(f"self-contained {name}", err, limit)
    return err / limit


def make_window_semantics(
    directory: Path,
    contained: SelfContained,
    raw_inputs: np.ndarray,
    reference: Callable[[np.ndarray], np.ndarray],
    *,
    features: Sequence[str],
    targets: Sequence[str],
    horizon: int,
    window: int,
    transform: str,
) -> SelfContained:
    """Replace the self-contained graphs in ``directory`` by window-semantics ones (:func:`graph_io.window_semantics`).

    Checked against ``reference`` (raw windows ``[N, W, F]`` -> raw outputs ``[N, O]``, e.g. Keras' ``predict``)
    on every full window of ``raw_inputs``, one step-graph call per sample, with the relative limit of
    :func:`make_self_contained`; recorded as ``parity.window_semantics``.
    """
    exported = contained.exported
    x = np.asarray(raw_inputs, np.float32)  # [T, F]
    seq = onnx.load(directory / exported.graphs["sequence"].file)
    state = [StateSpec(WINDOW_STATE, [window, x.shape[1]])]
    graphs: dict[str, GraphSpec] = dict(exported.graphs)
    for kind in ("step", "sequence"):
        path = directory / exported.graphs[kind].file
        proto = window_semantics(seq, kind, window, x.shape[1], list(exported.state))
        set_metadata(proto, {**metadata(features=features, targets=targets, horizon=horizon, window=window,
                                        state=state, transform=transform, graph=kind, fmt=FORMAT),
                             "eddy.semantics": "window"})
        onnx.save(proto, path)
        graphs[kind] = GraphSpec(file=path.name, sha256=sha256_file(path), ops=sorted(_onnx.count_ops(proto.graph).total))
    y_stream = stream_raw(directory / graphs["step"].file, state, x)  # [T, O]
    full = np.stack([x[i - window + 1 : i + 1] for i in range(window - 1, len(x))])  # [N, W, F]
    want = np.asarray(reference(full), np.float64)  # [N, O]
    limit = RTOL * max(float(np.max(np.abs(want), initial=0.0)), 1.0)
    figures = {"rule": f"|step graph - predict on each full window| <= {RTOL:g} * max(1, max |y|), raw units; "
                       "figure is error / limit", "limit": limit, "windows": int(len(full)),
               "step_vs_predict": check("window semantics", y_stream[window - 1 :], want, limit)}
    parity = {**exported.parity, "window_semantics": figures}
    return SelfContained(dataclasses.replace(exported, graphs=graphs, state=state, parity=parity), y_stream)
