"""Open Inference Protocol messages <-> plain values: inputs, sequence parameters, answers, metadata.

Pure functions, no I/O; :mod:`~eddy.runtime.grpc.oip` (the servicer) calls
them. An eddy model appears on this protocol as one FP32 input ``x`` shaped
``[-1, F]`` and one FP32 output ``y`` shaped ``[-1, O]`` (raw-unit
predictions, one row per sample). Its configuration reads like a Triton
sequence model with a batch dimension (``max_batch_size`` = sessions per
onnxruntime call, dims ``[F]`` and ``[O]``), so tools such as perf_analyzer
size requests from it; the first dimension of a request is this request's
samples, in order (Triton's sequence batcher takes exactly 1; eddy also
takes chunks), never independent rows. Inputs are accepted in ``raw_input_contents``
(little-endian) or typed ``contents.fp32_contents``; answers always go in
``raw_output_contents`` (tritonclient reads only those). The tensor rules are
eddy.v1's (:func:`~eddy.runtime.grpc.tensors.decode_float32`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from eddy.v1 import oip_pb2 as pb

from ..core.calibration import level_name
from ..core.errors import InvalidInput, shown
from ..core.layout import INPUT, OUTPUT  # the step graph's own names, served as they are
from ..core.model import Model
from ..core.monitor import Forecast
from ..core.samples import FLOAT32_LE
from ..serving.config import ServeConfig
from ..serving.sequences import SequenceStep
from ..serving.stats import ModelStats
from .tensors import SampleCheck, decode_float32

__all__ = ["INPUT", "INTERVAL", "OUTPUT", "PLATFORM", "forecast_response_bytes", "infer_input", "infer_response",
           "infer_response_bytes", "interval_request", "model_config", "model_metadata", "model_statistics",
           "repository_index", "sequence_step", "stream_response_bytes"]

PLATFORM = "eddy"  # ONNX step graph run by onnxruntime, state kept by eddy's sessions
INTERVAL = "interval"  # request parameter: the interval levels to answer with ("0.8", "0.8,0.95", 0.8 or true)
_BOUND = re.compile(rf"{OUTPUT}_(lower|upper)_(\d+(?:\.\d+)?)")  # y_lower_80, y_upper_97.5: interval outputs
_FP32 = "FP32"
_NATIVE_LE = sys.byteorder == "little"  # raw bytes are then float32 as they are


def sequence_step(parameters: dict[str, pb.InferParameter]) -> SequenceStep:
    """``sequence_id`` (int64, uint64 or string; 0 or "" = none) and the bool flags -> :class:`SequenceStep`.

    Other parameters (e.g. tritonclient's ``priority``, ``timeout``) are ignored. Keyed lookups, each guarded by
    ``in`` (a missing key read from a protobuf map would be inserted): half the cost of a pass over the map.
    """
    sid, start, end = "", False, False
    if "sequence_id" in parameters:
        sid = _sequence_id(parameters["sequence_id"])
    if "sequence_start" in parameters:
        start = _flag("sequence_start", parameters["sequence_start"])
    if "sequence_end" in parameters:
        end = _flag("sequence_end", parameters["sequence_end"])
    return SequenceStep(sid, start, end)


def _sequence_id(p: pb.InferParameter) -> str:
    if (n := p.int64_param) > 0:  # the common case: a positive int64 id (any other value leaves it 0)
        return str(n)
    kind = p.WhichOneof("parameter_choice")
    if kind == "int64_param":
        if p.int64_param < 0:
            raise InvalidInput(f"sequence_id must not be negative, got {p.int64_param}")
        return ""
    if kind == "uint64_param":
        return str(p.uint64_param) if p.uint64_param else ""
    if kind == "string_param":
        return p.string_param
    raise InvalidInput(f"sequence_id must be an int64, uint64 or string parameter, got {kind or 'no value'}")


def _flag(key: str, p: pb.InferParameter) -> bool:
    if not p.HasField("bool_param"):
        raise InvalidInput(f"{key} must be a bool parameter")
    return p.bool_param


def infer_input(request: pb.ModelInferRequest, model: Model, *, check: SampleCheck | None = None) -> np.ndarray:
    """The request's samples as validated raw float32 ``x[n, F]`` (InvalidInput naming the problem).

    ``check``: called with the sample count the shape claims before decoding (:func:`decode_float32`).
    The common request (one input ``x``, FP32, ``[n, F]`` in ``raw_input_contents``, finite) comes back as a
    read-only view of the request's bytes after a few checks; any other goes through the full rules, which name
    what is wrong.
    """
    inputs, raws = request.inputs, request.raw_input_contents
    if len(inputs) == 1 and len(raws) == 1 and _NATIVE_LE:
        inp, f = inputs[0], model.n_features
        shape = inp.shape
        if len(shape) == 2 and shape[1] == f and inp.name == INPUT and inp.datatype == _FP32 \
                and not inp.HasField("contents") and _outputs_ok(request.outputs):
            n = shape[0]
            if check is not None:
                check(max(n, 0))
            raw = raws[0]
            if n > 0 and len(raw) == 4 * n * f:
                x = np.frombuffer(raw, np.float32).reshape(n, f)  # [n, F]
                if np.isfinite(x).all():
                    return x
    return _infer_input(request, model, check=check)


def _outputs_ok(outputs: Sequence[pb.ModelInferRequest.InferRequestedOutputTensor]) -> bool:
    return not outputs or (len(outputs) == 1 and outputs[0].name == OUTPUT)


def _infer_input(request: pb.ModelInferRequest, model: Model, *, check: SampleCheck | None = None) -> np.ndarray:
    """:func:`infer_input`'s rules in full (every problem named)."""
    inputs = request.inputs
    if len(inputs) != 1 or inputs[0].name != INPUT:
        got = [i.name for i in inputs]
        names = ", ".join(f"`{shown(n, quote=False)}`" for n in got[:4]) + (f" and {len(got) - 4} more" if len(got) > 4
                                                                              else "")
        raise InvalidInput(f"model {model.name} takes one input `{INPUT}`, got {names or 'none'}")
    inp = inputs[0]
    if inp.datatype != _FP32:
        raise InvalidInput(f"input `{INPUT}` must have datatype {_FP32}, got {shown(inp.datatype, quote=False) or 'none'}")
    raws = request.raw_input_contents
    if len(raws) > 1:
        raise InvalidInput(f"raw_input_contents holds {len(raws)} entries for 1 input")
    if raws:
        if inp.HasField("contents"):
            raise InvalidInput("input `x` sets both contents and raw_input_contents; use exactly one")
        values, raw = (), raws[0]
    else:
        values, raw = inp.contents.fp32_contents, b""
    x, _ = decode_float32(list(inp.shape), values, raw, model.n_features,
                          fields=("`contents.fp32_contents`", "`raw_input_contents`"), check=check)
    return x  # [n, F]


def interval_request(request: pb.ModelInferRequest, model: Model) -> tuple[tuple[float, ...], list[str]]:
    """The interval levels a request asks for and the outputs to answer, checked before anything runs.

    Levels come from the ``interval`` parameter (a string ``"0.8"`` or ``"0.8,0.95"``, a double, or ``true`` for
    every calibrated level) and from requested outputs named like ``y_lower_80``. Outputs: those the request
    names, else ``y`` and each level's ``y_lower_<pct>``, ``y_upper_<pct>``. Raises InvalidInput for an unknown
    output or a level the model does not hold, FailedPrecondition when it has no calibration.
    """
    levels: list[float] = []
    if INTERVAL in request.parameters:
        levels += _levels(request.parameters[INTERVAL], model)
    names = [o.name for o in request.outputs]
    for name in names:
        if name == OUTPUT:
            continue
        match = _BOUND.fullmatch(name)
        if match is None:
            known = [OUTPUT, *_bound_names(model, range(len(model.interval_levels)))]
            raise InvalidInput(f"model {model.name} has outputs {', '.join(f'`{n}`' for n in known)}, "
                               f"not `{shown(name, quote=False)}`")
        levels.append(float(match.group(2)) / 100)
    if not levels:
        return (), names
    index = model._interval_index(levels)  # FailedPrecondition without a calibration, InvalidInput for a level
    held = tuple(model.interval_levels[i] for i in index)
    return held, names or [OUTPUT, *_bound_names(model, index)]


def _bound_name(side: str, level: float) -> str:
    """The OIP output holding one side (``lower``, ``upper``) of a level's interval: ``y_lower_80``, ``y_upper_97.5``
    (what :data:`_BOUND` reads back)."""
    return f"{OUTPUT}_{side}_{level_name(level)}"


def _bound_names(model: Model, index: Iterable[int]) -> list[str]:
    """``y_lower_80``, ``y_upper_80``, ... for the model's calibrated levels at positions ``index``."""
    levels = model.interval_levels
    return [_bound_name(side, levels[i]) for i in index for side in ("lower", "upper")]


def _levels(p: pb.InferParameter, model: Model) -> list[float]:
    kind = p.WhichOneof("parameter_choice")
    if kind == "bool_param" and p.bool_param:
        if not model.interval_levels:
            model._interval_index(True)  # FailedPrecondition naming how to add a calibration
        return list(model.interval_levels)
    if kind == "double_param":
        return [p.double_param]
    if kind == "string_param":
        try:
            return [float(v) for v in p.string_param.split(",")]
        except ValueError:
            pass
    raise InvalidInput(f"{INTERVAL} must be a string of levels (\"0.8\" or \"0.8,0.95\"), a double or true, "
                       f"got {kind or 'no value'}")


def forecast_response_bytes(model: Model, request_id: str, forecast: Forecast | np.ndarray, names: list[str]) -> bytes:
    """A serialized ``ModelInferResponse`` with the outputs ``names`` (``y``, ``y_lower_80``, ...), in that order."""
    arrays = {OUTPUT: forecast} if isinstance(forecast, np.ndarray) else {
        OUTPUT: forecast.y,
        **{_bound_name("lower", lv): a for lv, a in forecast.lower.items()},
        **{_bound_name("upper", lv): a for lv, a in forecast.upper.items()}}
    chosen = [(n, arrays[n]) for n in names]
    return pb.ModelInferResponse(
        model_name=model.name, model_version=str(model.version), id=request_id,
        outputs=[pb.ModelInferResponse.InferOutputTensor(name=n, datatype=_FP32, shape=a.shape) for n, a in chosen],
        raw_output_contents=[a.astype(FLOAT32_LE).tobytes() for _, a in chosen]).SerializeToString()


def infer_response(model: Model, request_id: str, y: np.ndarray) -> pb.ModelInferResponse:
    """``y[n, O]`` as a ``ModelInferResponse`` with the data in ``raw_output_contents``."""
    return pb.ModelInferResponse(
        model_name=model.name, model_version=str(model.version), id=request_id,
        outputs=[pb.ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype=_FP32, shape=y.shape)],
        raw_output_contents=[y.astype(FLOAT32_LE, copy=False).tobytes()])


def infer_response_bytes(model: Model, request_id: str, y: np.ndarray) -> bytes:
    """:func:`infer_response`, serialized, without building a message (the per-request hot path).

    Protobuf's wire format is a sequence of fields, so the answer is a cached
    serialized template (names, version, output shape) followed by the ``id``
    (field 3) and ``raw_output_contents`` (field 6) fields. A test checks that
    it parses to exactly what :func:`infer_response` builds.
    """
    n, width = y.shape
    raw = y.tobytes() if _NATIVE_LE and y.dtype == np.float32 else y.astype(FLOAT32_LE).tobytes()
    rid = request_id.encode()
    return b"".join((_template(model.name, model.version, n, width),
                     b"\x1a", _varint(len(rid)), rid,  # field 3, length-delimited (empty: harmless, parses as "")
                     b"\x32", _varint(len(raw)), raw))  # field 6, length-delimited


def stream_response_bytes(infer_response: bytes) -> bytes:
    """A serialized ``ModelStreamInferResponse`` carrying a serialized ``infer_response`` (field 2)."""
    return b"\x12" + _varint(len(infer_response)) + infer_response


@lru_cache(maxsize=512)
def _template(name: str, version: int, n: int, width: int) -> bytes:
    return pb.ModelInferResponse(
        model_name=name, model_version=str(version),
        outputs=[pb.ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype=_FP32, shape=[n, width])],
    ).SerializeToString()


_SMALL = [bytes((i,)) for i in range(128)]  # the varints of 0..127: one byte each


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tensor(name: str, width: int) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=name, datatype=_FP32, shape=[-1, width])


def model_metadata(model: Model, versions: list[int]) -> pb.ModelMetadataResponse:
    """``x FP32 [-1, F]`` in, ``y FP32 [-1, O]`` out, and for a calibrated model each level's ``y_lower_80``,
    ``y_upper_80`` (answered when a request asks: the ``interval`` parameter or those names among its outputs);
    ``versions``: every version served under the name."""
    bounds = _bound_names(model, range(len(model.interval_levels)))
    return pb.ModelMetadataResponse(name=model.name, versions=[str(v) for v in sorted(versions)], platform=PLATFORM,
                                    inputs=[_tensor(INPUT, model.n_features)],
                                    outputs=[_tensor(name, len(model.targets)) for name in (OUTPUT, *bounds)])


def model_config(model: Model, config: ServeConfig) -> pb.ModelConfigResponse:
    """A synthesized Triton model configuration: sequence batching with the session TTL as idle time.

    ``max_batch_size`` is the most sessions one onnxruntime call runs (``--max-batch``; 1 without batching),
    which is what it means for a Triton sequence model; the dims leave out that first dimension, as Triton's do.
    """
    m = model.manifest
    params = {"cell": m.cell, "layers": str(m.layers), "units": str(m.units), "features": ",".join(m.features),
              "targets": ",".join(m.targets), "window": str(m.window), "horizon": str(m.horizon),
              "version": str(m.version)}
    batching = pb.ModelSequenceBatching(
        max_sequence_idle_microseconds=int(config.session_ttl * 1_000_000),
        oldest=pb.ModelSequenceBatching.StrategyOldest(max_candidate_sequences=config.max_batch,
                                                       max_queue_delay_microseconds=config.max_delay_us))
    return pb.ModelConfigResponse(config=pb.ModelConfig(
        name=model.name, platform=PLATFORM, backend=PLATFORM, max_batch_size=config.max_batch if config.batching else 1,
        input=[pb.ModelInput(name=INPUT, data_type=pb.TYPE_FP32, dims=[model.n_features])],
        output=[pb.ModelOutput(name=OUTPUT, data_type=pb.TYPE_FP32, dims=[len(model.targets)])],
        sequence_batching=batching,
        parameters={k: pb.ModelParameter(string_value=v) for k, v in params.items()}))


def repository_index(index: dict[str, list[int]]) -> pb.RepositoryIndexResponse:
    """One READY entry per served model version, sorted by name and version."""
    return pb.RepositoryIndexResponse(models=[
        pb.RepositoryIndexResponse.ModelIndex(name=name, version=str(v), state="READY")
        for name, versions in sorted(index.items()) for v in sorted(versions)])


def model_statistics(stats: list[ModelStats]) -> pb.ModelStatisticsResponse:
    """Triton's statistics message from eddy's counters (eddy has no response cache: those stay 0)."""
    d = pb.StatisticDuration
    return pb.ModelStatisticsResponse(model_stats=[pb.ModelStatistics(
        name=s.name, version=str(s.version), last_inference=s.last_inference_ms, inference_count=s.inference_count,
        execution_count=s.execution_count,
        inference_stats=pb.InferStatistics(
            success=d(count=s.success_count, ns=s.success_ns), fail=d(count=s.fail_count, ns=s.fail_ns),
            queue=d(count=s.queue_count, ns=s.queue_ns), compute_input=d(count=s.compute_count, ns=s.input_ns),
            compute_infer=d(count=s.compute_count, ns=s.infer_ns),
            compute_output=d(count=s.compute_count, ns=s.output_ns), cache_hit=d(), cache_miss=d()),
        batch_stats=[pb.InferBatchStatistics(batch_size=size, compute_input=d(count=calls, ns=input_ns),
                                             compute_infer=d(count=calls, ns=infer_ns),
                                             compute_output=d(count=calls, ns=output_ns))
                     for size, (calls, input_ns, infer_ns, output_ns) in sorted(s.batches.items())])
        for s in stats])
