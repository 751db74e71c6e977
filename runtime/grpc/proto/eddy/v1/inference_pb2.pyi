from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("shape", "values", "raw")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    raw: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., raw: _Optional[bytes] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("open", "samples", "control")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    open: OpenStream
    samples: Tensor
    control: Control
    def __init__(self, open: _Optional[_Union[OpenStream, _Mapping]] = ..., samples: _Optional[_Union[Tensor, _Mapping]] = ..., control: _Optional[_Union[Control, _Mapping]] = ...) -> None: ...

class Control(_message.Message):
    __slots__ = ("action",)
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[Control.Action]
        RESET: _ClassVar[Control.Action]
        CLOSE: _ClassVar[Control.Action]
        EXPORT_STATE: _ClassVar[Control.Action]
    ACTION_UNSPECIFIED: Control.Action
    RESET: Control.Action
    CLOSE: Control.Action
    EXPORT_STATE: Control.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: Control.Action
    def __init__(self, action: _Optional[_Union[Control.Action, str]] = ...) -> None: ...

class OpenStream(_message.Message):
    __slots__ = ("model", "version", "session_id", "state", "resume", "intervals")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    session_id: str
    state: bytes
    resume: bool
    intervals: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., session_id: _Optional[str] = ..., state: _Optional[bytes] = ..., resume: bool = ..., intervals: _Optional[_Iterable[float]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("opened", "predictions", "error", "control_done")
    OPENED_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONTROL_DONE_FIELD_NUMBER: _ClassVar[int]
    opened: StreamOpened
    predictions: Predictions
    error: Error
    control_done: ControlDone
    def __init__(self, opened: _Optional[_Union[StreamOpened, _Mapping]] = ..., predictions: _Optional[_Union[Predictions, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., control_done: _Optional[_Union[ControlDone, _Mapping]] = ...) -> None: ...

class StreamOpened(_message.Message):
    __slots__ = ("model", "version", "features", "targets", "session_id", "position", "resumed", "interval_levels")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_LEVELS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    features: _containers.RepeatedScalarFieldContainer[str]
    targets: _containers.RepeatedScalarFieldContainer[str]
    session_id: str
    position: int
    resumed: bool
    interval_levels: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ..., targets: _Optional[_Iterable[str]] = ..., session_id: _Optional[str] = ..., position: _Optional[int] = ..., resumed: bool = ..., interval_levels: _Optional[_Iterable[float]] = ...) -> None: ...

class ControlDone(_message.Message):
    __slots__ = ("action", "position", "state")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    action: Control.Action
    position: int
    state: bytes
    def __init__(self, action: _Optional[_Union[Control.Action, str]] = ..., position: _Optional[int] = ..., state: _Optional[bytes] = ...) -> None: ...

class Predictions(_message.Message):
    __slots__ = ("offset", "outputs", "intervals")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    offset: int
    outputs: Tensor
    intervals: _containers.RepeatedCompositeFieldContainer[Interval]
    def __init__(self, offset: _Optional[int] = ..., outputs: _Optional[_Union[Tensor, _Mapping]] = ..., intervals: _Optional[_Iterable[_Union[Interval, _Mapping]]] = ...) -> None: ...

class Interval(_message.Message):
    __slots__ = ("level", "lower", "upper")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    level: float
    lower: Tensor
    upper: Tensor
    def __init__(self, level: _Optional[float] = ..., lower: _Optional[_Union[Tensor, _Mapping]] = ..., upper: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class FleetRequest(_message.Message):
    __slots__ = ("open", "samples")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    open: FleetOpen
    samples: FleetSamples
    def __init__(self, open: _Optional[_Union[FleetOpen, _Mapping]] = ..., samples: _Optional[_Union[FleetSamples, _Mapping]] = ...) -> None: ...

class FleetOpen(_message.Message):
    __slots__ = ("model", "version", "intervals")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    intervals: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., intervals: _Optional[_Iterable[float]] = ...) -> None: ...

class FleetSamples(_message.Message):
    __slots__ = ("session_ids", "samples", "resume")
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    samples: Tensor
    resume: bool
    def __init__(self, session_ids: _Optional[_Iterable[str]] = ..., samples: _Optional[_Union[Tensor, _Mapping]] = ..., resume: bool = ...) -> None: ...

class FleetResponse(_message.Message):
    __slots__ = ("opened", "predictions", "error")
    OPENED_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    opened: FleetOpened
    predictions: FleetPredictions
    error: Error
    def __init__(self, opened: _Optional[_Union[FleetOpened, _Mapping]] = ..., predictions: _Optional[_Union[FleetPredictions, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class FleetOpened(_message.Message):
    __slots__ = ("model", "version", "features", "targets", "interval_levels")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_LEVELS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    features: _containers.RepeatedScalarFieldContainer[str]
    targets: _containers.RepeatedScalarFieldContainer[str]
    interval_levels: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ..., targets: _Optional[_Iterable[str]] = ..., interval_levels: _Optional[_Iterable[float]] = ...) -> None: ...

class FleetPredictions(_message.Message):
    __slots__ = ("offsets", "outputs", "errors", "intervals")
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    offsets: bytes
    outputs: Tensor
    errors: _containers.RepeatedCompositeFieldContainer[FleetError]
    intervals: _containers.RepeatedCompositeFieldContainer[Interval]
    def __init__(self, offsets: _Optional[bytes] = ..., outputs: _Optional[_Union[Tensor, _Mapping]] = ..., errors: _Optional[_Iterable[_Union[FleetError, _Mapping]]] = ..., intervals: _Optional[_Iterable[_Union[Interval, _Mapping]]] = ...) -> None: ...

class FleetError(_message.Message):
    __slots__ = ("index", "code", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    code: int
    message: str
    def __init__(self, index: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelVersions]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelVersions, _Mapping]]] = ...) -> None: ...

class ModelVersions(_message.Message):
    __slots__ = ("name", "versions", "latest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedScalarFieldContainer[int]
    latest: int
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[int]] = ..., latest: _Optional[int] = ...) -> None: ...

class ModelMetadataRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class StateTensor(_message.Message):
    __slots__ = ("name", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class ModelMetadata(_message.Message):
    __slots__ = ("name", "version", "versions", "cell", "layers", "units", "features", "targets", "window", "horizon", "state", "manifest_json", "metrics", "parity")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ParityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CELL_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PARITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    versions: _containers.RepeatedScalarFieldContainer[int]
    cell: str
    layers: int
    units: int
    features: _containers.RepeatedScalarFieldContainer[str]
    targets: _containers.RepeatedScalarFieldContainer[str]
    window: int
    horizon: int
    state: _containers.RepeatedCompositeFieldContainer[StateTensor]
    manifest_json: str
    metrics: _containers.ScalarMap[str, float]
    parity: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., versions: _Optional[_Iterable[int]] = ..., cell: _Optional[str] = ..., layers: _Optional[int] = ..., units: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ..., targets: _Optional[_Iterable[str]] = ..., window: _Optional[int] = ..., horizon: _Optional[int] = ..., state: _Optional[_Iterable[_Union[StateTensor, _Mapping]]] = ..., manifest_json: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., parity: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model", "version", "inputs", "states")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    inputs: Tensor
    states: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., inputs: _Optional[_Union[Tensor, _Mapping]] = ..., states: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("model", "version", "outputs", "states")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    outputs: Tensor
    states: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., outputs: _Optional[_Union[Tensor, _Mapping]] = ..., states: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class SessionState(_message.Message):
    __slots__ = ("session_id", "model", "version", "position", "state", "live")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    model: str
    version: int
    position: int
    state: bytes
    live: LiveAccuracy
    def __init__(self, session_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., position: _Optional[int] = ..., state: _Optional[bytes] = ..., live: _Optional[_Union[LiveAccuracy, _Mapping]] = ...) -> None: ...

class LiveAccuracyRequest(_message.Message):
    __slots__ = ("model", "version", "session_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    session_id: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class LiveAccuracy(_message.Message):
    __slots__ = ("model", "version", "session_id", "actuals", "window", "rmse", "mae", "error_ratio", "coverage", "drift", "cusum", "test_rmse", "test_coverage")
    class RmseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MaeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CoverageEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TestRmseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TestCoverageEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUALS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    RMSE_FIELD_NUMBER: _ClassVar[int]
    MAE_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATIO_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    CUSUM_FIELD_NUMBER: _ClassVar[int]
    TEST_RMSE_FIELD_NUMBER: _ClassVar[int]
    TEST_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    session_id: str
    actuals: int
    window: int
    rmse: _containers.ScalarMap[str, float]
    mae: _containers.ScalarMap[str, float]
    error_ratio: float
    coverage: _containers.ScalarMap[str, float]
    drift: bool
    cusum: _containers.RepeatedScalarFieldContainer[float]
    test_rmse: _containers.ScalarMap[str, float]
    test_coverage: _containers.ScalarMap[str, float]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., session_id: _Optional[str] = ..., actuals: _Optional[int] = ..., window: _Optional[int] = ..., rmse: _Optional[_Mapping[str, float]] = ..., mae: _Optional[_Mapping[str, float]] = ..., error_ratio: _Optional[float] = ..., coverage: _Optional[_Mapping[str, float]] = ..., drift: bool = ..., cusum: _Optional[_Iterable[float]] = ..., test_rmse: _Optional[_Mapping[str, float]] = ..., test_coverage: _Optional[_Mapping[str, float]] = ...) -> None: ...
