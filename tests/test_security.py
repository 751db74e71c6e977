"""Transport security and authentication on loopback: TLS, mTLS, bearer tokens, open health, secure defaults."""

from __future__ import annotations

import queue
import subprocess

import grpc
import numpy as np
import pytest
from _certs import Pki, make_pki
from _serving import EDDY, eddy_process, reference
from conftest import MODEL, ROOT, ThreadedServer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from eddy.runtime.client import Client
from eddy.runtime.core.errors import EddyError
from eddy.runtime.grpc.security import InsecureBind, Security, TlsFiles, TokenTable, new_token, token_digest
from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> tuple[dict[str, str], TokenTable]:
    """Two tenants' tokens and the table built from a tokens file holding only their digests."""
    toks = {"alpha": new_token(), "beta": new_token()}
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text("# tenant digest\n\n" + "".join(f"{t} {token_digest(k)}  # {t}'s\n" for t, k in toks.items()))
    return toks, TokenTable(path)


@pytest.fixture(scope="module")
def mtls_server(models_dir, pki, tokens):
    tls = TlsFiles(pki.server_cert, pki.server_key, pki.ca)
    s = ThreadedServer(models_dir, security=Security(tls=tls, tokens=tokens[1], reflection=False))
    yield s
    s.stop()


def _client(server, pki, token=None, *, ca=None, cert=True) -> Client:
    return Client(server.address, tls_ca=ca or pki.ca, tls_cert=pki.client_cert if cert else None,
                  tls_key=pki.client_key if cert else None, token=token, timeout=10)


def test_mtls_with_token_streams_exactly(mtls_server, pki, tokens, model, series, local):
    with _client(mtls_server, pki, tokens[0]["alpha"]) as c, c.stream(MODEL) as rs:
        y = np.concatenate([rs.push(x) for x in series[:20]])
    np.testing.assert_array_equal(y, local[:20])  # TLS changes the transport, not one bit of the answers


@pytest.mark.parametrize("case", ["wrong CA", "no client cert", "rogue client cert", "plaintext"])
def test_transport_refusals_are_unavailable(mtls_server, pki, tokens, case):
    token = tokens[0]["alpha"]
    if case == "wrong CA":
        c = _client(mtls_server, pki, token, ca=pki.rogue_ca)
    elif case == "no client cert":
        c = _client(mtls_server, pki, token, cert=False)
    elif case == "rogue client cert":
        c = Client(mtls_server.address, tls_ca=pki.ca, tls_cert=pki.rogue_client_cert,
                   tls_key=pki.rogue_client_key, token=token, timeout=10)
    else:
        c = Client(mtls_server.address, token=token, timeout=10)
    with c, pytest.raises(EddyError) as e:
        c.list_models()
    assert e.value.code == "UNAVAILABLE"  # the handshake fails: no RPC reaches eddy


@pytest.mark.parametrize("token", [None, "wrong", "Bearer"])
def test_bad_or_missing_token_is_unauthenticated(mtls_server, pki, token):
    with _client(mtls_server, pki, token) as c:
        for call in (c.list_models, lambda: c.stream(MODEL), lambda: c.session_state("x"),
                     lambda: c.predict(MODEL, np.zeros((1, 2, 1), np.float32))):
            with pytest.raises(EddyError) as e:
                call()
            assert e.value.code == "UNAUTHENTICATED"
            assert "token" in e.value.message


def test_authorization_must_be_bearer(mtls_server, pki, tokens):
    creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), pki.client_key.read_bytes(),
                                         pki.client_cert.read_bytes())
    with grpc.secure_channel(mtls_server.address, creds) as channel:
        stub = pb_grpc.InferenceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.ListModels(pb.ListModelsRequest(), metadata=[("authorization", f"Basic {tokens[0]['alpha']}")])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel)  # health needs no token (load balancers)
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_off_and_health_open(mtls_server, pki, tokens):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), pki.client_key.read_bytes(),
                                         pki.client_cert.read_bytes())
    with grpc.secure_channel(mtls_server.address, creds) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        metadata = [("authorization", f"Bearer {tokens[0]['alpha']}")]
        with pytest.raises(grpc.RpcError) as e:
            list(stub.ServerReflectionInfo(iter([request]), metadata=metadata))
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED  # --no-reflection


def test_tls_without_client_ca_and_reflection_needs_a_token(models_dir, pki, tokens):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    s = ThreadedServer(models_dir, security=Security(tls=TlsFiles(pki.server_cert, pki.server_key),
                                                     tokens=tokens[1]))
    try:
        with Client(s.address, tls_ca=pki.ca, token=tokens[0]["beta"], timeout=10) as c:
            assert MODEL in c.list_models()  # server TLS only: no client certificate needed
        with grpc.secure_channel(s.address, grpc.ssl_channel_credentials(pki.ca.read_bytes())) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.RpcError) as e:
                list(stub.ServerReflectionInfo(iter([request])))
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = list(stub.ServerReflectionInfo(iter([request]),
                                                metadata=[("authorization", f"Bearer {tokens[0]['beta']}")]))
            assert "eddy.v1.Inference" in {x.name for x in ok[0].list_services_response.service}
    finally:
        s.stop()


def test_tokens_file_reload(tmp_path):
    path = tmp_path / "tokens"
    first, second = new_token(), new_token()
    path.write_text(f"t1 {token_digest(first)}\n")
    table = TokenTable(path)
    assert table.tenant(first) == "t1" and table.tenant(second) is None
    path.write_text(f"t2 {token_digest(second)}\n")  # rotation: the old token is gone, the new one works
    assert table.reload()
    assert table.tenant(first) is None and table.tenant(second) == "t2"
    path.write_text(f"t3 {second}\n")  # a token pasted instead of its digest: refused, previous table kept
    assert not table.reload()
    assert table.tenant(second) == "t2"


@pytest.mark.parametrize("line", ["alpha", "alpha abc", "al pha " + "0" * 64, "-x " + "0" * 64, "a " + "g" * 64])
def test_tokens_file_rejects_malformed_lines(tmp_path, line):
    path = tmp_path / "tokens"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match="line 1"):
        TokenTable(path)


@pytest.mark.parametrize("security", [Security(), Security(tls=TlsFiles(ROOT, ROOT)), Security(tokens=object())])
def test_non_loopback_bind_needs_tls_and_tokens(security):
    with pytest.raises(InsecureBind, match="--insecure"):
        security.check_bind("0.0.0.0")
    security.check_bind("127.0.0.1")
    security.check_bind("::1")
    Security(insecure=True).check_bind("0.0.0.0")


def test_cli_refuses_open_bind_and_prints_tokens(tmp_path):
    import subprocess

    r = subprocess.run([*EDDY, "serve", "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--insecure" in r.stderr
    r = subprocess.run([*EDDY, "token", "acme"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    token, line = r.stdout.splitlines()
    assert r.returncode == 0 and line == f"acme {token_digest(token)}" and len(token) >= 40
    path = tmp_path / "tokens"
    path.write_text(line + "\n")
    assert TokenTable(path).tenant(token) == "acme"


def test_eddy_stream_over_mtls_with_token_from_env(models_dir, pki, tokens, tmp_path, series, local):
    csv = tmp_path / "in.csv"
    csv.write_text("sunspots\n" + "".join(f"{float(v)}\n" for v in series[:5, 0]))
    import os

    with eddy_process("serve", "--models", str(models_dir), "--port", "0", "--tls-cert", str(pki.server_cert),
                      "--tls-key", str(pki.server_key), "--tls-client-ca", str(pki.ca),
                      "--auth-tokens", str(tokens[1].path)) as server:
        address = server.stdout.readline().split()[-1]
        args = ["stream", "--server", address, "--model", MODEL, "--csv", str(csv), "--tls-ca", str(pki.ca),
                "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]
        env = {**os.environ, "EDDY_TOKEN": tokens[0]["alpha"]}
        with eddy_process(*args, env=env) as ok:
            out, err = ok.communicate(timeout=60)
        assert ok.returncode == 0, err
        preds = np.array([float(r.split(",")[-1]) for r in out.splitlines()[1:]], np.float32)
        np.testing.assert_allclose(preds, local[:5, 0], rtol=1e-6)
        with eddy_process(*args, "--token", "nope") as bad:
            _, err = bad.communicate(timeout=60)
        assert bad.returncode == 2 and "invalid token" in err  # UNAUTHENTICATED: the user's token is wrong


def test_sighup_rereads_the_tokens_file(models_dir, tmp_path):
    import signal

    old, new = new_token(), new_token()
    path = tmp_path / "tokens"
    path.write_text(f"acme {token_digest(old)}\n")
    path.chmod(0o600)
    with eddy_process("serve", "--models", str(models_dir), "--port", "0", "--auth-tokens", str(path)) as server:
        address = server.stdout.readline().split()[-1]
        with Client(address, token=old, timeout=10) as c:
            assert MODEL in c.list_models()
        path.write_text(f"acme {token_digest(new)}\n")  # rotate: new token in, old one out
        server.send_signal(signal.SIGHUP)
        while "tokens file" not in (line := server.stderr.readline()):
            assert line, "server ended before reloading"
        assert "reloaded" in line
        with Client(address, token=new, timeout=10) as c:
            assert MODEL in c.list_models()
        with Client(address, token=old, timeout=10) as c, pytest.raises(EddyError) as e:
            c.list_models()
        assert e.value.code == "UNAUTHENTICATED"


def test_replicas_sharing_a_state_key_accept_each_others_bytes(models_dir, tmp_path, series, model):
    from eddy.runtime.core.statecodec import StateKeys

    key = tmp_path / "state.key"
    key.write_text("# shared by the replicas\n" + "ab" * 32 + "\n")
    key.chmod(0o600)
    shared, other = StateKeys.from_file(key), StateKeys((b"z" * 32,))
    a, b, c = (ThreadedServer(models_dir, security=Security(state_keys=k)) for k in (shared, shared, other))
    try:
        with Client(a.address) as ca, ca.stream(MODEL) as rs:
            first = rs.push(series[:4])
            blob = rs.export_state()
        with Client(b.address) as cb, cb.stream(MODEL, state=blob) as rs:
            second = rs.push(series[4:8])
        want = reference(model, [series[:4], series[4:8]])
        assert np.array_equal(first, want[0]) and np.array_equal(second, want[1])
        with Client(c.address) as cc, pytest.raises(EddyError) as e:
            cc.stream(MODEL, state=blob)
        assert e.value.code == "UNAUTHENTICATED"
    finally:
        for s in (a, b, c):
            s.stop()


def test_state_bytes_of_another_tenant_are_permission_denied(mtls_server, pki, tokens, series):
    alpha, beta = tokens[0]["alpha"], tokens[0]["beta"]
    with _client(mtls_server, pki, alpha) as c, c.stream(MODEL) as rs:
        rs.push(series[:3])
        blob = rs.export_state()
    with _client(mtls_server, pki, beta) as c:
        for call in (lambda: c.stream(MODEL, state=blob), lambda: c.predict(MODEL, np.ones((1, 2, 1)), states=[blob])):
            with pytest.raises(EddyError) as e:
                call()
            assert (e.value.code, e.value.message) == ("PERMISSION_DENIED", "state bytes belong to another tenant")
    with _client(mtls_server, pki, alpha) as c, c.stream(MODEL, state=blob) as rs:
        assert rs.position == 3  # its own tenant still can


def test_cli_refuses_a_short_state_key(tmp_path):
    import subprocess

    key = tmp_path / "state.key"
    key.write_text("short\n")
    key.chmod(0o600)
    r = subprocess.run([*EDDY, "serve", "--port", "0", "--state-key", str(key)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--state-key" in r.stderr and "shorter than 32" in r.stderr


def test_tenants_see_nothing_of_each_others_sessions(mtls_server, pki, tokens, model, series):
    alpha, beta = tokens[0]["alpha"], tokens[0]["beta"]
    with _client(mtls_server, pki, alpha) as c, c.stream(MODEL, session_id="meter-1") as rs:
        first = rs.push(series[:3])
    with _client(mtls_server, pki, beta) as c:
        for call in (lambda: c.session_state("meter-1"), lambda: c.delete_session("meter-1"),
                     lambda: c.stream(MODEL, session_id="meter-1", resume=True)):
            with pytest.raises(EddyError) as e:
                call()
            assert e.value.code == "NOT_FOUND"  # not PERMISSION_DENIED: another tenant's ids do not even exist
        with c.stream(MODEL, session_id="meter-1") as rs:  # the same id is beta's own, new session
            assert (rs.position, rs.resumed) == (0, False)
            rs.push(series[100:110])
        assert c.session_state("meter-1").position == 10
    with _client(mtls_server, pki, alpha) as c:
        info = c.session_state("meter-1")
        assert info.position == 3
        with c.stream(MODEL, session_id="meter-1-copy", state=info.state) as rs:  # alpha's bytes work for alpha
            assert rs.position == 3
        with c.stream(MODEL, session_id="meter-1", resume=True) as rs:
            second = rs.push(series[3:6])
    with _client(mtls_server, pki, beta) as c, pytest.raises(EddyError) as e:
        c.stream(MODEL, state=info.state)
    assert e.value.code == "PERMISSION_DENIED"
    want = reference(model, [series[:3], series[3:6]])
    assert np.array_equal(first, want[0]) and np.array_equal(second, want[1])


def test_per_tenant_limits(models_dir, tokens, series):
    from eddy.runtime.serving.config import ServeConfig

    config = ServeConfig(max_sessions_per_tenant=2, max_streams_per_tenant=1)
    s = ThreadedServer(models_dir, config, Security(tokens=tokens[1]))
    try:
        with Client(s.address, token=tokens[0]["alpha"]) as a, Client(s.address, token=tokens[0]["beta"]) as b:
            with a.stream(MODEL, session_id="a1") as rs:
                rs.push(series[:1])
                with pytest.raises(EddyError) as e:
                    a.stream(MODEL, session_id="a2")  # a second concurrent stream of alpha
                assert e.value.code == "RESOURCE_EXHAUSTED" and "--max-streams-per-tenant" in e.value.message
                with b.stream(MODEL) as other:  # beta is not held back by alpha
                    other.push(series[:1])
            s.until(lambda: s.server.plane.sessions.busy_count == 0)
            a.stream(MODEL, session_id="a2").close()
            with pytest.raises(EddyError) as e:
                a.stream(MODEL, session_id="a3")  # a third session of alpha
            assert e.value.code == "RESOURCE_EXHAUSTED" and "--max-sessions-per-tenant" in e.value.message
            with b.stream(MODEL, session_id="b2") as other:
                other.push(series[:1])
            a.delete_session("a2")
            a.stream(MODEL, session_id="a3").close()  # room again
    finally:
        s.stop()


def test_oip_sequences_are_per_tenant_and_need_a_token(models_dir, tokens, series, model):
    from eddy.runtime.grpc.oip import OIP_SERVICE
    from eddy.v1 import oip_pb2 as opb

    def infer(address: str, token: str | None, x: np.ndarray, **params: opb.InferParameter) -> opb.ModelInferResponse:
        inp = opb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
        req = opb.ModelInferRequest(model_name=MODEL, inputs=[inp], parameters=params,
                                    raw_input_contents=[x.astype("<f4").tobytes()])
        with grpc.insecure_channel(address) as channel:
            rpc = channel.unary_unary(f"/{OIP_SERVICE}/ModelInfer", request_serializer=opb.ModelInferRequest.SerializeToString,
                                      response_deserializer=opb.ModelInferResponse.FromString)
            return rpc(req, timeout=30, metadata=[("authorization", f"Bearer {token}")] if token else None)

    seq = opb.InferParameter(int64_param=42)
    s = ThreadedServer(models_dir, security=Security(tokens=tokens[1]))
    try:
        with pytest.raises(grpc.RpcError) as e:
            infer(s.address, None, series[:1], sequence_id=seq, sequence_start=opb.InferParameter(bool_param=True))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        infer(s.address, tokens[0]["alpha"], series[:3], sequence_id=seq,
              sequence_start=opb.InferParameter(bool_param=True))
        with pytest.raises(grpc.RpcError) as e:  # beta cannot continue alpha's sequence 42: it does not exist for beta
            infer(s.address, tokens[0]["beta"], series[3:5], sequence_id=seq)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "START" in e.value.details()
        r = infer(s.address, tokens[0]["alpha"], series[3:5], sequence_id=seq)
        y = np.frombuffer(r.raw_output_contents[0], "<f4").reshape(2, 1)
        assert np.array_equal(y, reference(model, [series[:3], series[3:5]])[1])
    finally:
        s.stop()


def test_sighup_ends_the_open_streams_of_a_removed_token(models_dir, tmp_path, series, model):
    """Both protocols: a removed token's open streams end UNAUTHENTICATED at once; other tokens' go on."""
    import signal

    from eddy.runtime.grpc.oip import OIP_SERVICE
    from eddy.v1 import oip_pb2 as oip

    removed, kept, fresh = new_token(), new_token(), new_token()
    path = tmp_path / "tokens"
    path.write_text(f"acme {token_digest(removed)}\nbeta {token_digest(kept)}\n")
    path.chmod(0o600)

    def oip_request(x: np.ndarray, start: bool) -> oip.ModelInferRequest:
        inp = oip.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
        return oip.ModelInferRequest(model_name=MODEL, inputs=[inp], raw_input_contents=[x.tobytes()], parameters={
            "sequence_id": oip.InferParameter(string_param="oip-acme"),
            "sequence_start": oip.InferParameter(bool_param=start)})

    with eddy_process("serve", "--models", str(models_dir), "--port", "0", "--auth-tokens", str(path)) as server:
        address = server.stdout.readline().split()[-1]
        with Client(address, token=removed, timeout=30) as a, Client(address, token=kept, timeout=30) as b, \
                grpc.insecure_channel(address) as channel:
            stream_a, stream_b = a.stream(MODEL, session_id="acme-1"), b.stream(MODEL, session_id="beta-1")
            stream_a.push(series[:2])
            stream_b.push(series[:2])
            requests: queue.SimpleQueue[oip.ModelInferRequest | None] = queue.SimpleQueue()
            requests.put(oip_request(series[:1], True))
            oip_a = channel.stream_stream(f"/{OIP_SERVICE}/ModelStreamInfer",
                                          request_serializer=oip.ModelInferRequest.SerializeToString,
                                          response_deserializer=oip.ModelStreamInferResponse.FromString)(
                iter(requests.get, None), metadata=[("authorization", f"Bearer {removed}")], timeout=30)
            assert not next(oip_a).error_message

            path.write_text(f"acme {token_digest(fresh)}\nbeta {token_digest(kept)}\n")  # acme's old token out
            server.send_signal(signal.SIGHUP)
            while "tokens file" not in (line := server.stderr.readline()):  # the streams are ended in the same step
                assert line, "server ended before reloading"
            assert "reloaded" in line

            with pytest.raises(EddyError) as e:
                stream_a.push(series[2:3])
            assert e.value.code == "UNAUTHENTICATED" and "revoked" in e.value.message
            requests.put(oip_request(series[1:2], False))
            with pytest.raises(grpc.RpcError) as oe:
                next(oip_a)
            assert oe.value.code() == grpc.StatusCode.UNAUTHENTICATED and "revoked" in oe.value.details()
            requests.put(None)
            assert np.array_equal(stream_b.push(series[2:3]), reference(model, [series[:2], series[2:3]])[1])
            stream_b.close()
            with pytest.raises(EddyError) as e:
                a.stream(MODEL, session_id="acme-2")
            assert e.value.code == "UNAUTHENTICATED"
        with Client(address, token=fresh, timeout=30) as c, c.stream(MODEL, session_id="acme-1", resume=True) as rs:
            assert rs.position == 2  # the tenant's session, released at once and resumable with its new token
            assert np.array_equal(rs.push(series[2:3]), reference(model, [series[:2], series[2:3]])[1])


def _eddy_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDDY, "serve", "--port", "0", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_a_tokens_file_others_may_write_is_refused_as_sshd_does(tmp_path, caplog):
    path, token = tmp_path / "tokens", new_token()
    path.write_text(f"acme {token_digest(token)}\n")
    for mode in (0o666, 0o664, 0o646):
        path.chmod(mode)
        with pytest.raises(ValueError, match=f"writable by other users \\(mode 0{mode:o}\\).*chmod 600"):
            TokenTable(path)
    r = _eddy_serve("--auth-tokens", str(path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--auth-tokens:" in r.stderr and "0646" in r.stderr
    path.chmod(0o600)
    with caplog.at_level("WARNING", "eddy.security"):
        table = TokenTable(path)
    assert table.tenant(token) == "acme" and not [r for r in caplog.records if r.name == "eddy.security"]  # silent
    path.chmod(0o666)
    assert not table.reload() and table.tenant(token) == "acme"  # on SIGHUP: refused, the previous table stays
    path.chmod(0o644)
    with caplog.at_level("WARNING", "eddy.security"):
        assert table.reload()
    assert "readable by other users (mode 0644)" in caplog.text  # read by others: accepted, and said


def test_one_digest_under_two_tenants_is_refused(tmp_path):
    path, digest = tmp_path / "tokens", token_digest(new_token())
    path.write_text(f"acme {digest}\n# again\nacme {digest}\n")
    assert len(TokenTable(path)) == 1  # the same line twice: harmless
    path.write_text(f"acme {digest}\n\numbrella {digest.upper()}\n")
    with pytest.raises(ValueError, match="line 3: this digest is tenant acme's already \\(line 1\\)"):
        TokenTable(path)


def test_an_empty_tokens_file_says_that_every_call_will_be_refused(tmp_path, caplog):
    path = tmp_path / "tokens"
    path.write_text("# nobody yet\n")
    with caplog.at_level("WARNING", "eddy.security"):
        assert len(TokenTable(path)) == 0
    assert "lists no token: every call but health checks will be refused" in caplog.text


def test_a_state_key_others_may_read_is_refused_as_ssh_does(tmp_path, caplog):
    from eddy.runtime.core.statecodec import StateKeys

    key = tmp_path / "state.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o644)
    r = _eddy_serve("--state-key", str(key))
    assert r.returncode == 2 and "--state-key:" in r.stderr and "open to other users (mode 0644)" in r.stderr
    for mode in (0o604, 0o602):
        key.chmod(mode)
        with pytest.raises(ValueError, match="open to other users"):
            StateKeys.from_file(key)
    key.chmod(0o640)
    with caplog.at_level("WARNING", "eddy.security"):
        StateKeys.from_file(key)  # a group may share it: accepted, and said
    assert "open to its group (mode 0640)" in caplog.text
    key.chmod(0o400)
    assert StateKeys.from_file(key).keys == (b"ab" * 32,)


def test_a_public_metrics_bind_is_held_to_the_host_rule(models_dir, tokens):
    from eddy.runtime.serving.config import ServeConfig

    with pytest.raises(InsecureBind, match="metrics on non-loopback address 0.0.0.0: /metrics has no TLS or tokens"):
        ThreadedServer(models_dir, ServeConfig(metrics_port=0, metrics_host="0.0.0.0"), Security(tokens=tokens[1]))
    r = _eddy_serve("--metrics-port", "0", "--metrics-host", "0.0.0.0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--insecure to expose it" in r.stderr
    Security(insecure=True).check_bind("127.0.0.1", "0.0.0.0")  # the explicit opt-in
    Security().check_bind("127.0.0.1", "::1")


def test_one_tenant_cannot_take_every_stream_by_default(models_dir, tokens, series):
    from eddy.runtime.serving.config import ServeConfig

    config = ServeConfig(max_streams=8)  # no --max-streams-per-tenant: a token's tenant gets 8 // 4 = 2
    s = ThreadedServer(models_dir, config, Security(tokens=tokens[1]))
    try:
        with Client(s.address, token=tokens[0]["alpha"]) as a, Client(s.address, token=tokens[0]["beta"]) as b:
            mine = [a.stream(MODEL) for _ in range(2)]
            with pytest.raises(EddyError) as e:
                a.stream(MODEL)
            assert e.value.code == "RESOURCE_EXHAUSTED" and e.value.message.endswith(
                "(--max-streams-per-tenant 2, by default 1/4 of --max-streams); close one first")
            theirs = [b.stream(MODEL) for _ in range(2)]  # the others keep their share
            for rs in (*mine, *theirs):
                rs.push(series[:1])
                rs.close()
    finally:
        s.stop()
    open_server = ThreadedServer(models_dir, config)  # no tokens: every caller is one tenant, held to --max-streams
    try:
        with Client(open_server.address) as c:
            streams = [c.stream(MODEL) for _ in range(8)]
            with pytest.raises(EddyError, match="--max-streams 8"):
                c.stream(MODEL)
            for rs in streams:
                rs.close()
    finally:
        open_server.stop()
