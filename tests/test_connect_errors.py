"""A connection the CLI cannot make is one line saying what is wrong and what to do, never gRPC's own text
(`failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:50061: Socket closed`) nor its C
core's log lines (`ssl_transport_security.cc`, `add_port.cc`); an address without a port is refused instead of
dialing 443. Real servers on loopback: plaintext, TLS, mTLS.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from _certs import Pki, make_pki
from _serving import eddy_process
from conftest import MODEL, ThreadedServer

from eddy.cli.main import main
from eddy.runtime.grpc.security import Security, TlsFiles


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def servers(models_dir: Path, pki: Pki) -> Iterator[dict[str, str]]:
    """kind -> address: plaintext, TLS, mTLS servers, and a bound port nothing listens on."""
    started = {"plain": ThreadedServer(models_dir),
               "tls": ThreadedServer(models_dir, security=Security(tls=TlsFiles(pki.server_cert, pki.server_key))),
               "mtls": ThreadedServer(models_dir, security=Security(tls=TlsFiles(pki.server_cert, pki.server_key,
                                                                                 pki.ca)))}
    with socket.socket() as closed:  # bound, not listening: connecting is refused
        closed.bind(("127.0.0.1", 0))
        yield {**{k: s.address for k, s in started.items()}, "closed": f"127.0.0.1:{closed.getsockname()[1]}"}
    for s in started.values():
        s.stop()


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("csv") / "in.csv"
    path.write_text("sunspots\n10\n20\n")
    return path


def _flags(pki: Pki, names: str) -> list[str]:
    files = {"ca": ["--tls-ca", str(pki.ca)], "rogue-ca": ["--tls-ca", str(pki.rogue_ca)], "tls": ["--tls"],
             "cert": ["--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)],
             "rogue-cert": ["--tls-cert", str(pki.rogue_client_cert), "--tls-key", str(pki.rogue_client_key)]}
    return [f for n in names.split() for f in files[n]]


CASES = [  # server, client flags, exit status, the line
    ("tls", "", 2, "{address} speaks TLS and this connection was plaintext: pass --tls (and --tls-ca PEM when its "
                   "certificate is signed by a CA the system does not trust)"),
    ("plain", "ca", 2, "{address} speaks plaintext, not TLS: drop --tls, --tls-ca, --tls-cert and --tls-key"),
    ("tls", "tls", 2, "{address}'s TLS certificate does not verify against the system's CAs: unable to get local "
                      "issuer certificate: pass --tls-ca with the CA that signed it"),
    ("tls", "rogue-ca", 2, "{address}'s TLS certificate does not verify against --tls-ca"),
    ("mtls", "ca", 2, "{address} requires a client certificate (mTLS): pass --tls-cert PEM --tls-key PEM"),
    ("mtls", "ca rogue-cert", 2, "{address} refused the client certificate --tls-cert"),
    ("closed", "", 1, "nothing listens on {address} (connection refused): is eddy serve running there, on that port?"),
]


@pytest.mark.parametrize(("kind", "flags", "status", "line"), CASES, ids=[f"{c[0]}-{c[1] or 'plaintext'}" for c in CASES])
def test_a_failed_connection_is_one_line_saying_what_to_do(
        servers: dict[str, str], pki: Pki, csv: Path, capsys: pytest.CaptureFixture[str],
        kind: str, flags: str, status: int, line: str) -> None:
    address = servers[kind]
    code = main(["stream", "--server", address, "--model", MODEL, "--csv", str(csv), *_flags(pki, flags)])
    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (status, 1), err
    assert err.startswith("eddy stream: " + line.format(address=address)), err


def test_the_right_flags_still_stream(servers: dict[str, str], pki: Pki, csv: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    for kind, flags in (("plain", ""), ("tls", "ca"), ("mtls", "ca cert")):
        assert main(["stream", "--server", servers[kind], "--model", MODEL, "--csv", str(csv),
                     *_flags(pki, flags)]) == 0
        assert capsys.readouterr().out.startswith("sunspots,pred_sunspots\n10,")


@pytest.mark.parametrize(("server", "line"), [
    ("localhost", "no port in --server localhost: did you mean localhost:50051? (eddy serve's default port)"),
    ("[::1]", "no port in --server [::1]: did you mean [::1]:50051? (eddy serve's default port)"),
    ("::1", "--server ::1: an IPv6 address goes in brackets with a port, e.g. [::1]:50051"),
    ("localhost:0", "--server localhost:0: the port must be a number from 1 to 65535, got '0'"),
    (":50051", "--server :50051: no host before the port, e.g. 127.0.0.1:50051"),
])
def test_an_address_without_a_port_is_refused_not_sent_to_443(server: str, line: str, csv: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stream", "--server", server, "--model", MODEL, "--csv", str(csv)]) == 2
    assert capsys.readouterr().err == f"eddy stream: {line}\n"


def test_tls_files_are_checked_before_use(pki: Pki, csv: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello\n")
    stream = ["stream", "--server", "127.0.0.1:1", "--model", MODEL, "--csv", str(csv)]
    serve = ["serve", "--port", "0"]
    for argv, line in (
            ([*stream, "--tls-ca", str(not_pem)], f"eddy stream: --tls-ca {not_pem}: no PEM certificate"),
            ([*stream, "--tls-ca", str(tmp_path / "none.pem")], f"eddy stream: --tls-ca {tmp_path / 'none.pem'}: "
                                                                "No such file or directory"),
            ([*stream, "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.server_key)],
             f"eddy stream: --tls-key {pki.server_key} is not the private key of --tls-cert {pki.client_cert}"),
            ([*serve, "--tls-cert", str(not_pem), "--tls-key", str(pki.server_key)],
             f"eddy serve: --tls-cert {not_pem}: no PEM certificate"),
            ([*serve, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_cert)],
             f"eddy serve: --tls-key {pki.server_cert}: no PEM private key"),
            ([*serve, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--tls-client-ca",
              str(not_pem)], f"eddy serve: --tls-client-ca {not_pem}: no PEM certificate")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(line) and err.count("\n") == 1, err


def test_no_grpc_log_lines_reach_the_terminal(servers: dict[str, str], csv: Path, models_dir: Path) -> None:
    """The processes as users run them: the C core's log stays off unless GRPC_VERBOSITY is set."""
    with eddy_process("stream", "--server", servers["tls"], "--model", MODEL, "--csv", str(csv)) as p:
        _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and err == (f"eddy stream: {servers['tls']} speaks TLS and this connection was "
                                         "plaintext: pass --tls (and --tls-ca PEM when its certificate is signed by "
                                         "a CA the system does not trust)\n")
    port = servers["plain"].rsplit(":", 1)[1]  # taken by the plaintext server
    with eddy_process("serve", "--models", str(models_dir), "--port", port, "--log-level", "WARNING") as p:
        _, err = p.communicate(timeout=60)
    assert p.returncode == 1 and err == (f"eddy serve: cannot listen on 127.0.0.1:{port}: another process listens "
                                         "on it (another eddy serve?): stop it or pick another --port\n")
