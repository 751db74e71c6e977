"""The generated eddy.v1 modules are current; Tensor <-> numpy and status conversions."""

from __future__ import annotations

import subprocess
import sys

import grpc
import numpy as np
import pytest
from conftest import ROOT

from eddy.runtime.core.errors import EddyError, FailedPrecondition, InvalidInput, NotFound, ResourceExhausted
from eddy.runtime.grpc.codecs import (
    array_to_tensor,
    error_from_status,
    error_to_proto,
    list_models_response,
    status_code,
    tensor_to_samples,
)
from eddy.v1 import inference_pb2 as pb


def test_generated_modules_are_current():
    pytest.importorskip("grpc_tools")
    r = subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_generated_modules_import_as_their_proto_package():
    """protoc's own absolute imports are kept: the generated folder installs as ``eddy.v1``."""
    from eddy.v1 import inference_pb2_grpc

    assert inference_pb2_grpc.InferenceStub and pb.DESCRIPTOR.package == "eddy.v1"
    assert "from eddy.v1 import inference_pb2" in (ROOT / "runtime/grpc/proto/eddy/v1/inference_pb2_grpc.py").read_text()


@pytest.mark.parametrize("encoding", ["raw", "values"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (5, 3)])
def test_round_trip(encoding, shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    wire = pb.Tensor.FromString(array_to_tensor(x, encoding).SerializeToString())
    assert list(wire.shape) == list(shape)
    assert (len(wire.raw) > 0) == (encoding == "raw") and (len(wire.values) > 0) == (encoding == "values")
    y, got = tensor_to_samples(wire, shape[1])
    assert got == encoding and y.dtype == np.float32 and y.shape == shape
    np.testing.assert_array_equal(y, x)


def test_raw_is_little_endian_float32():
    t = array_to_tensor(np.array([[1.0], [-2.5]], np.float32), "raw")
    assert t.raw == np.array([1.0, -2.5], "<f4").tobytes()
    big = pb.Tensor(shape=[2, 1], raw=np.array([1.0, -2.5], "<f4").tobytes())
    np.testing.assert_array_equal(tensor_to_samples(big, 1)[0], [[1.0], [-2.5]])


def test_array_to_tensor_rejects_unknown_encoding():
    with pytest.raises(ValueError):
        array_to_tensor(np.zeros((1, 1)), "json")  # type: ignore[arg-type]


def _f32(*v: float) -> bytes:
    return np.array(v, "<f4").tobytes()


@pytest.mark.parametrize("tensor, words", [
    (pb.Tensor(shape=[1, 1]), "no data"),
    (pb.Tensor(shape=[], values=[1.0]), "shape"),
    (pb.Tensor(shape=[1], values=[1.0]), "shape"),
    (pb.Tensor(shape=[1, 1, 1], values=[1.0]), "shape"),
    (pb.Tensor(shape=[0, 1]), "at least 1"),
    (pb.Tensor(shape=[-1, 1], values=[1.0]), "at least 1"),
    (pb.Tensor(shape=[1, 2], values=[1.0, 2.0]), "1 feature"),
    (pb.Tensor(shape=[2, 1], values=[1.0]), "`values` holds 1"),
    (pb.Tensor(shape=[1, 1], values=[1.0, 2.0]), "`values` holds 2"),
    (pb.Tensor(shape=[1, 1], raw=b"\x00\x00\x80"), "3 bytes"),
    (pb.Tensor(shape=[2, 1], raw=_f32(1.0)), "4 bytes"),
    (pb.Tensor(shape=[1, 1], values=[1.0], raw=_f32(1.0)), "both"),
    (pb.Tensor(shape=[2, 1], values=[1.0, float("nan")]), "sample 1"),
    (pb.Tensor(shape=[1, 1], raw=_f32(float("inf"))), "finite"),
])
def test_rejections_name_the_problem(tensor, words):
    with pytest.raises(InvalidInput, match=words) as e:
        tensor_to_samples(tensor, 1)
    assert e.value.code == "INVALID_ARGUMENT"


def test_status_mapping_both_ways():
    for cls, code in [(InvalidInput, grpc.StatusCode.INVALID_ARGUMENT), (NotFound, grpc.StatusCode.NOT_FOUND),
                      (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
                      (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION)]:
        assert status_code(cls("m")) == code
        assert error_to_proto(cls("m")) == pb.Error(code=code.value[0], message="m")
        back = error_from_status(code, "msg")
        assert type(back) is cls and back.message == "msg"
        assert type(error_from_status(code.value[0], "msg")) is cls  # the in-band number works too
    other = error_from_status(grpc.StatusCode.UNAVAILABLE, "down")
    assert type(other) is EddyError and other.code == "UNAVAILABLE" and str(other) == "down"
    assert status_code(EddyError("x")) == grpc.StatusCode.INTERNAL


def test_list_models_response():
    r = list_models_response({"b": [2, 1], "a": [3]})
    assert [(m.name, list(m.versions), m.latest) for m in r.models] == [("a", [3], 3), ("b", [1, 2], 2)]
