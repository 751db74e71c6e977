"""The in-process runtime: load a model version and stream samples through it.

This is the on-device API. It needs onnxruntime and numpy only::

    import eddy.runtime as runtime
    model = runtime.load("models/sunspots")      # highest version
    stream = model.stream()                       # zero state
    stream.push(42.0)                             # -> array([[y]]), raw units
    stream.push([[40.1], [38.7], [35.0]])         # -> [3, O], one per sample
    f = stream.push(37.5, intervals=True)         # -> Forecast: f.y, f.lower[0.8], f.upper[0.8], ...
    stream.live                                   # this stream's live accuracy (LiveFigures)

A stream's outputs depend only on the samples pushed since it started (or was
reset) and on how they were chunked: one sample runs the step graph, a chunk of
two or more the sequence graph. The same samples in the same chunks give the
same bits wherever they run (a served session, a resumed one, batched or not);
cut differently they agree within the parity rule (docs/reference/exactness.md).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .binding import SCALAR_TYPES, StepBinding
from .errors import FailedPrecondition, InvalidInput, ModelLoadError
from .layout import GRAPH_FORMATS, INPUT, OUTPUT, PRECISIONS, graph_key, resolve_version_dir, state_output
from .live import LiveFigures, LivePool, reference_figures, session_figures
from .manifest import Manifest, StateSpec, read_manifest
from .monitor import MONITOR, Forecast, Monitor
from .samples import as_samples, nonfinite_rows, unanswerable

__all__ = ["Forecast", "Model", "Stream", "load", "session_options"]

State = dict[str, np.ndarray]


def load(path: str | Path, *, precision: str = "float32", graph_format: str = "onnx",
         lazy_sequence: bool = False) -> Model:
    """Load a model version directory, checking its manifest, every file's sha256 and the graphs' inputs and outputs.

    Args:
        path: `models/NAME` (its highest version) or `models/NAME/VERSION`.
        precision: `"float32"`, or `"int8"` for the int8 twins `eddy train --quantize int8` wrote.
        graph_format: `"onnx"`, or `"ort"` for the `.ort` files (`--format onnx ort`).
        lazy_sequence: open the sequence graph's onnxruntime session only at the first chunk (the server does:
            one-sample traffic never needs it; for an LSTM 2x256 it is ~5 MB and ~17 ms of start-up).

    Returns:
        The loaded `Model`.

    Raises:
        NotFound: `path` does not exist or holds no version.
        ModelLoadError: the directory is broken or tampered with (the message names the file and the problem).
        ValueError: an unknown `precision` or `graph_format`.
    """
    version_dir = resolve_version_dir(path)
    return Model(version_dir, read_manifest(version_dir), precision=precision, graph_format=graph_format,
                 lazy_sequence=lazy_sequence)


def session_options() -> ort.SessionOptions:
    """onnxruntime options tuned for many small calls (docs/architecture.md: 1 thread, sequential, no spinning).

    The trainer uses the same ones for its parity checks and int8 timings.
    """
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


class Model:
    """One loaded model version: its manifest and its onnxruntime sessions. Made by `load`.

    Each `Stream` it makes is for one caller at a time; many streams may share one model.

    Attributes:
        path: the version directory.
        manifest: the parsed `manifest.json` (`eddy.runtime.core.manifest.Manifest`).
        precision: `"float32"` or `"int8"`.
        graph_format: `"onnx"` or `"ort"`.
        monitor: the per-stream interval and live-accuracy arithmetic (`eddy.runtime.core.monitor.Monitor`).
        live: live accuracy pooled over every stream of this model in the process (`live.figures()`).
    """

    def __init__(self, version_dir: Path, manifest: Manifest, *, precision: str = "float32",
                 graph_format: str = "onnx", lazy_sequence: bool = False) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if graph_format not in GRAPH_FORMATS:
            raise ValueError(f"graph_format must be one of {', '.join(GRAPH_FORMATS)}, got {graph_format!r}")
        self.path = Path(version_dir)
        self.manifest = manifest
        self.precision = precision
        self.graph_format = graph_format
        norm = manifest.normalization
        self._in_mean = np.asarray(norm.input_mean, np.float32)  # [F]
        self._in_std = np.asarray(norm.input_std, np.float32)  # [F]
        self._out_mean = np.asarray(norm.target_mean, np.float32)  # [O]
        self._out_std = np.asarray(norm.target_std, np.float32)  # [O]
        if manifest.io == "raw":  # the graphs normalise themselves: identity constants here, which are exact
            self._in_mean, self._in_std = np.zeros_like(self._in_mean), np.ones_like(self._in_std)
            self._out_mean, self._out_std = np.zeros_like(self._out_mean), np.ones_like(self._out_std)
        self._raw_in = manifest.io == "raw"  # (x - 0) / 1 is x itself, bit for bit: _run_step skips it
        self._step = self._open("step", x_rank=2)
        # The step graph's C-level run (skips the Python wrapper's per-call checks, ~1.5 us of a served
        # message); the public run if a release renames it.
        inner = getattr(self._step, "_sess", None)
        self._step_run = inner.run if inner is not None and hasattr(inner, "run") else self._step.run
        self._sequence_lock = threading.Lock()  # the batcher's worker thread may open it too
        self._sequence: ort.InferenceSession | None = None if lazy_sequence else self._open("sequence", x_rank=3)
        self._state_names = [s.name for s in manifest.state]
        self._outputs = [OUTPUT, *map(state_output, self._state_names)]
        self.monitor = Monitor(manifest)  # intervals and live accuracy per stream (core/monitor.py)
        self.live = LivePool(self.monitor, reference_figures(manifest.metrics))  # pooled over this model's streams
        self._probe("step", self._step, (2,))
        if self._sequence is not None:  # a lazily opened sequence graph is probed when it is opened
            self._probe("sequence", self._sequence, (2, 3))

    def _step_binding(self) -> StepBinding:
        """A batch-1 step graph with its own pre-bound buffers (one per :class:`Stream`)."""
        norm = (self._in_mean, self._in_std, self._out_mean, self._out_std)
        return StepBinding(self._step, self._state_names, [s.shape for s in self.manifest.state], norm)

    # -- public surface -------------------------------------------------
    @property
    def name(self) -> str:
        """The model's name (its folder under the repository)."""
        return self.manifest.name

    @property
    def version(self) -> int:
        """The version number (its folder's name)."""
        return self.manifest.version

    @property
    def features(self) -> list[str]:
        """Input column names, in the order of `x`'s last axis (F of them)."""
        return list(self.manifest.features)

    @property
    def targets(self) -> list[str]:
        """Predicted column names, in the order of `y`'s last axis (O of them)."""
        return list(self.manifest.targets)

    @property
    def n_features(self) -> int:
        """F, the number of input columns."""
        return self.manifest.n_features

    @property
    def n_targets(self) -> int:
        """O, the number of predicted columns."""
        return self.manifest.n_targets

    @property
    def state_spec(self) -> list[StateSpec]:
        """The state tensors a stream carries: name and shape without the batch axis (e.g. `h0 [50]`)."""
        return list(self.manifest.state)

    @property
    def interval_levels(self) -> tuple[float, ...]:
        """The levels the model's calibration holds (empty for a model without one)."""
        return self.monitor.levels

    def stream(self) -> Stream:
        """A new `Stream` on this model, starting from zero state at position 0."""
        return Stream(self)

    def _interval_index(self, levels: Any) -> tuple[int, ...]:
        """Positions of the wanted ``levels`` among :attr:`interval_levels` (``True``: all of them).

        Raises :class:`FailedPrecondition` for a model without a calibration (naming how to add one) and
        :class:`InvalidInput` for a level it does not hold.
        """
        have = self.monitor.levels
        if not have:
            raise FailedPrecondition(
                f"model {self.name}/{self.version} has no interval calibration (it was made before eddy calibrated "
                "intervals): retrain it with `eddy train`, or calibrate its Keras model with `eddy export "
                f"{self.path / 'model.keras'} --data FILE.csv --out DIR`, which writes a new version with one")
        if levels is True:
            return tuple(range(len(have)))
        wanted = [levels] if isinstance(levels, (int, float)) else list(levels)
        index = []
        for level in wanted:
            try:
                value = float(level)
            except (TypeError, ValueError):
                raise InvalidInput(f"interval level {level!r} is not a number") from None
            match = [i for i, h in enumerate(have) if abs(h - value) < 1e-9]
            if not match:
                raise InvalidInput(f"model {self.name}/{self.version} has intervals at levels "
                                   f"{', '.join(f'{h:g}' for h in have)} (calibrated at training), not {value:g}")
            if match[0] not in index:
                index.append(match[0])
        if not index:
            raise InvalidInput("no interval level given")
        return tuple(index)

    def _forecast(self, answer: np.ndarray, index: tuple[int, ...]) -> Forecast:
        """Split an answer ``[n, O * (1 + 2L)]`` (what the monitor returns) into predictions and the levels
        at ``index`` (from :meth:`_interval_index`)."""
        o = self.n_targets
        levels = self.monitor.levels
        lower = {levels[i]: answer[:, o * (1 + 2 * i): o * (2 + 2 * i)] for i in index}
        upper = {levels[i]: answer[:, o * (2 + 2 * i): o * (3 + 2 * i)] for i in index}
        return Forecast(answer[:, :o], lower, upper)

    def zero_state(self, batch: int = 1) -> State:
        """Zero state for `batch` streams: `{name: float32 [batch, *shape]}` (what a new stream starts from)."""
        return {s.name: np.zeros((batch, *s.shape), np.float32) for s in self.manifest.state}

    def predict(self, x: Any, state: Mapping[str, Any] | None = None, return_state: bool = False) -> Any:
        """Run whole sequences through the sequence graph, independently of any stream.

        Args:
            x: raw samples `[B, T, F]` (B sequences of T samples).
            state: `{name: [B, *shape]}` to start from (e.g. `zero_state(B)` or saved `Stream.state`s stacked);
                default: zero state.
            return_state: also return the state after the last sample.

        Returns:
            Raw predictions `y` `float32 [B, T, O]` (row t predicts the targets `horizon` samples after sample t),
            or `(y, final_state)` with `return_state`.

        Raises:
            InvalidInput: `x` is not `[B, T, F]` numbers, holds NaN or infinity, `state` does not match
                `state_spec`, or a sequence's answer or final state would not be finite (samples the model cannot
                compute in float32, e.g. not positive for a log-scale model).
        """
        arr = np.asarray(x)
        if arr.ndim != 3:
            raise InvalidInput(f"predict takes x shaped [B, T, {self.n_features}], got shape {list(arr.shape)}")
        b, t, f = arr.shape
        flat = as_samples(arr.reshape(b * t, f) if b * t else arr.reshape(0, f), self.n_features)
        st = self.zero_state(b) if state is None else self._check_state(state, batch=b)
        y, new = self._run_sequence(flat.reshape(b, t, f), st)
        if (bad := nonfinite_rows(y, new)) is not None:
            raise InvalidInput(f"sequence {int(bad[0])}: {unanswerable(y[bad[0]]).message}")
        return (y, new) if return_state else y

    # -- batched primitives (raw units in and out; used by the server) ----
    def _run_step(self, x: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """One step for B streams: ``x[B, F]`` raw, state ``[B, *shape]``."""
        if self._raw_in:
            xn = x if x.flags.c_contiguous and x.dtype == np.float32 else np.ascontiguousarray(x, np.float32)
        else:
            xn = ((x - self._in_mean) / self._in_std).astype(np.float32, copy=False)
        y, *new = self._step_run(self._outputs, {INPUT: xn, **state}, None)
        return self._denormalise(y), dict(zip(self._state_names, new))

    def _run_sequence(self, x: np.ndarray, state: State, *,
                     run_options: ort.RunOptions | None = None) -> tuple[np.ndarray, State]:
        """T steps for B streams: ``x[B, T, F]`` raw, state ``[B, *shape]``.

        ``run_options``: setting its ``terminate`` from another thread stops
        the call early with an exception (the server does it for a caller
        that went away).
        """
        return self._run(self._sequence or self._open_sequence(), (x - self._in_mean) / self._in_std, state,
                         run_options)

    def _advance(self, x: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """``n`` steps for B streams, ``x[B, n, F]`` raw -> ``y[B, n, O]``: the step
        graph for ``n == 1`` (no Loop to enter), the sequence graph otherwise."""
        if x.shape[1] == 1:
            y, new = self._run_step(x[:, 0], state)  # [B, O]
            return y[:, None], new  # [B, 1, O]
        return self._run_sequence(x, state)  # [B, n, O]

    def _run_sessions(self, x: np.ndarray, state: Mapping[str, np.ndarray], position: Any, *, sequence: bool = False,
                     run_options: ort.RunOptions | None = None) -> tuple[np.ndarray, State, np.ndarray | None]:
        """Advance ``B`` sessions (the graph, then their monitor): raw ``x[B, n, F]``, ``state`` the graph state
        ``[B, *shape]`` and the monitor rows under :data:`~eddy.runtime.core.monitor.MONITOR` (fresh if absent),
        ``position [B]`` the samples each has seen.

        Returns ``(answer [B, n, O * (1 + 2L)], new state with the new monitor rows, scored errors or None)``;
        the predictions are ``answer[..., :O]``. ``sequence`` (or ``run_options``, which makes the call stoppable
        from another thread) runs the sequence graph, else :meth:`_advance` picks the graph. Pure: nothing given is
        written to.
        """
        graph = {n: state[n] for n in self._state_names}
        if not sequence and run_options is None:
            y, new = self._advance(x, graph)
        else:
            y, new = self._run_sequence(x, graph, run_options=run_options)
        answer, monitor, observed = self._observe(x, state, position, y)
        if monitor is not None:
            new[MONITOR] = monitor
        return answer, new, observed

    def _observe(self, x: np.ndarray, state: Mapping[str, np.ndarray], position: Any,
                y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The monitor's part of :meth:`_run_sessions`, for predictions ``y [B, n, O]`` computed elsewhere:
        ``(answer, new monitor rows or None, scored errors or None)``."""
        monitor = self.monitor
        if not monitor.width:
            return y, None, None
        rows = state[MONITOR] if MONITOR in state else monitor.fresh(len(x))
        advanced = monitor.advance(rows, position, x, y)
        return advanced.answer, advanced.block, advanced.observed

    def _check_state(self, state: Mapping[str, Any], batch: int | None = None) -> State:
        """Validate a state mapping; returns float32 copies ``[B, *shape]``.

        Without ``batch`` the arrays are per-stream, shaped ``[*shape]``.
        """
        if not isinstance(state, Mapping):
            raise InvalidInput(f"state must be a mapping of name -> array, got {type(state).__name__}")
        names = [s.name for s in self.manifest.state]
        if set(state) != set(names):
            raise InvalidInput(f"state must have exactly the tensors {names}, got {sorted(state)}")
        out: State = {}
        for s in self.manifest.state:
            try:
                a = np.array(state[s.name], dtype=np.float32)
            except (TypeError, ValueError):
                raise InvalidInput(f"state {s.name!r} must be numeric") from None
            want = tuple(s.shape) if batch is None else (batch, *s.shape)
            if a.shape != want:
                raise InvalidInput(f"state {s.name!r} must have shape {list(want)}, got {list(a.shape)}")
            if not np.isfinite(a).all():
                raise InvalidInput(f"state {s.name!r} holds non-finite values")
            out[s.name] = a
        return out

    def __repr__(self) -> str:
        m = self.manifest
        return f"<Model {m.name}/{m.version} {m.cell}x{m.layers}({m.units}) F={m.n_features} O={m.n_targets}>"

    # -- internals ----------------------------------------------------------
    def _run(self, session: ort.InferenceSession, xn: np.ndarray, state: State,
             run_options: ort.RunOptions | None = None) -> tuple[np.ndarray, State]:
        feeds = {INPUT: xn.astype(np.float32, copy=False), **state}
        y, *new = session.run(self._outputs, feeds, run_options)
        # Outputs come in manifest order (self._outputs), whatever order the caller's mapping had.
        return self._denormalise(y), dict(zip(self._state_names, new))

    def _denormalise(self, y: np.ndarray) -> np.ndarray:
        """Normalised float32 outputs -> raw units (float32, the same bits as ``y * std + mean``)."""
        y = y * self._out_std  # a new array: onnxruntime's output is not written to
        y += self._out_mean
        return y

    def _open_sequence(self) -> ort.InferenceSession:
        with self._sequence_lock:
            if self._sequence is None:
                sequence = self._open("sequence", x_rank=3)
                self._probe("sequence", sequence, (2, 3))
                self._sequence = sequence
            return self._sequence

    def _open(self, kind: str, x_rank: int) -> ort.InferenceSession:
        key = graph_key(kind, self.precision, self.graph_format)
        spec = self.manifest.graphs.get(key)
        if spec is None:
            flag = " --format onnx ort" if self.graph_format == "ort" else ""
            how = (f"eddy train{flag}` or `eddy export{flag}" if self.precision == "float32"
                   else f"eddy train --quantize {self.precision}{flag}")
            fmt = " .ort" if self.graph_format == "ort" else ""
            raise ModelLoadError(f"{self.path}: has no {self.precision}{fmt} {kind} graph "
                                 f"(write it with `{how}`)")
        file = self.path / spec.file
        try:
            sess = ort.InferenceSession(str(file), session_options(), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(f"{file}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None
        self._check_io(sess, file, x_rank)
        return sess

    def _probe(self, kind: str, sess: ort.InferenceSession, lead: tuple[int, ...]) -> None:
        """Run the graph once on zeros and check every output's shape against the manifest.

        Static shapes in a graph can be symbolic or wrong; one run at load
        catches a state output one unit short before a request meets it.
        """
        m = self.manifest
        feed = {INPUT: np.zeros((*lead, m.n_features), np.float32),
                **{s.name: np.zeros((lead[0], *s.shape), np.float32) for s in m.state}}
        try:
            got = sess.run(self._outputs, feed)
        except Exception as e:
            raise ModelLoadError(f"{self.path}: the {kind} graph fails on zeros: {str(e).splitlines()[0]}") from None
        want = [(*lead, m.n_targets), *((lead[0], *s.shape) for s in m.state)]
        for name, out, shape in zip(self._outputs, got, want):
            if tuple(np.shape(out)) != tuple(shape):
                raise ModelLoadError(f"{self.path}: the {kind} graph's output {name} has shape "
                                     f"{list(np.shape(out))} for a {list(lead)} batch; the manifest says {list(shape)}")

    def _check_io(self, sess: ort.InferenceSession, file: Path, x_rank: int) -> None:
        m = self.manifest
        ins = {i.name: i.shape for i in sess.get_inputs()}
        outs = {o.name for o in sess.get_outputs()}
        want_in = {INPUT, *(s.name for s in m.state)}
        want_out = {OUTPUT, *(state_output(s.name) for s in m.state)}
        if set(ins) != want_in or outs != want_out:
            raise ModelLoadError(f"{file}: graph inputs {sorted(ins)} / outputs {sorted(outs)} do not match "
                                 f"the manifest (expected {sorted(want_in)} / {sorted(want_out)})")
        x_shape = ins[INPUT]
        if len(x_shape) != x_rank or x_shape[-1] != m.n_features:
            raise ModelLoadError(f"{file}: input x has shape {x_shape}, expected rank {x_rank} "
                                 f"ending in {m.n_features} features")
        for s in m.state:
            if [d for d in ins[s.name][1:]] != list(s.shape):
                raise ModelLoadError(f"{file}: state input {s.name} has shape {ins[s.name]}, "
                                     f"manifest says [B, {', '.join(map(str, s.shape))}]")


class Stream:
    """A stateful stream over one model: the state of one sequence, advanced by each `push`. Made by `Model.stream`.

    Not thread-safe: one caller at a time. A single sample runs the step graph through buffers bound once per
    stream; a chunk runs the sequence graph. Every sample also goes through the model's monitor (intervals,
    online recalibration, live accuracy), exactly as a served session's does, so a served session fed the same
    samples in the same chunks answers the same bits, intervals included.

    Attributes:
        model: the `Model` it runs.
    """

    def __init__(self, model: Model) -> None:
        self.model = model  # the Model it runs
        self._bound = model._step_binding()  # holds the state: two buffer sets, [1, *shape] each
        self._position = 0
        self._monitor = model.monitor.fresh(1)  # [1, K] float64

    @property
    def position(self) -> int:
        """Samples pushed since the stream started or was last reset (the next sample's index)."""
        return self._position

    @property
    def state(self) -> State:
        """A copy of the state: `{name: float32 [*shape]}` for every tensor of `Model.state_spec`.

        Assigning a mapping of the same names and shapes restores it (the position is kept); a wrong name,
        shape or a non-finite value raises `InvalidInput` and changes nothing.
        """
        return {k: v[0].copy() for k, v in zip(self._bound.names, self._bound.state())}

    @state.setter
    def state(self, value: Mapping[str, Any]) -> None:
        self._bound.set_state(self.model._check_state(value))  # validated first: a bad value changes nothing

    @property
    def _monitor_state(self) -> np.ndarray:
        """A copy of the stream's monitor row ``[K]`` (online widths, live accuracy; :mod:`~eddy.runtime.core.monitor`)."""
        return self._monitor[0].copy()

    @property
    def live(self) -> LiveFigures:
        """This stream's live accuracy (`LiveFigures`): its errors against the actuals it was sent (a target that
        is also a feature brings its actual with each sample), next to the naive baselines, and the drift alarm."""
        return session_figures(self.model.monitor, self._monitor[0], self.model.live.reference)

    def reset(self) -> None:
        """Back to zero state and position 0 (the monitor starts afresh too)."""
        self._bound.zero()
        self._position = 0
        self._monitor = self.model.monitor.fresh(1)

    def push(self, samples: Any, *, intervals: Any = None) -> Any:
        """Feed raw samples in order; returns one raw prediction per sample.

        Args:
            samples: n samples of the model's F features in raw units, as `[n, F]` (a chunk), `[F]` (one
                sample), or a plain number when F = 1 (one sample; the fastest path). Anything array-like of
                numbers; converted to float32.
            intervals: `True` (every calibrated level), one level (`0.8`) or several (`[0.8, 0.95]`): return a
                `Forecast` with the predictions and each level's bounds instead of the bare predictions.

        Returns:
            `float32 [n, O]` raw predictions: row i predicts the targets `horizon` samples after sample i. With
            `intervals`, a `Forecast` (`y [n, O]`, `lower[level]` and `upper[level]`, each `[n, O]`).

        Raises:
            InvalidInput: (a `ValueError`) not numbers, a wrong feature count, no samples, NaN or infinity,
                samples whose answer or state would not be finite (the model cannot compute them in float32,
                e.g. not positive for a log-scale model), or a level the model's calibration does not hold. The
                stream is left exactly as it was.
            FailedPrecondition: `intervals` asked of a model without a calibration.
        """
        index = self.model._interval_index(intervals) if intervals is not None and intervals is not False else ()
        x = None
        y = None
        if type(samples) in SCALAR_TYPES:  # one plain number: Python floats, no numpy on the way
            y = self._bound.push_scalar(samples)
            if y is not None:
                x = np.array([[samples]], np.float32)  # the value the graph read (push_scalar rounds alike)
        if y is None:
            x = as_samples(samples, self.model.n_features)  # [n, F]
            if len(x) == 1:
                y = self._bound.push_row(x)  # [1, O]
            else:
                bound = self._bound
                y3, new = self.model._run_sequence(x[None], dict(zip(bound.names, bound.state())))  # [1, n, O]
                if nonfinite_rows(y3, new) is not None:
                    raise unanswerable(y3[0])
                bound.set_state(new)  # only after the run succeeded
                y = y3[0]
        assert x is not None
        advanced = self.model.monitor.advance(self._monitor, (self._position,), x[None], y[None])
        self._monitor = advanced.block
        self.model.live.add(advanced.observed)
        self._position += len(x)
        if index:
            return self.model._forecast(advanced.answer[0], index)
        return y

    def __repr__(self) -> str:
        return f"<Stream {self.model.name}/{self.model.version} at {self._position}>"
