"""Test-time X.509 material: a CA, a server certificate for 127.0.0.1/localhost, client certificates."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pki", "make_pki"]


@dataclass(frozen=True)
class Pki:
    """PEM files written by :func:`make_pki`."""

    ca: Path  # the CA every good certificate chains to
    server_cert: Path
    server_key: Path
    client_cert: Path  # signed by ``ca``
    client_key: Path
    rogue_ca: Path  # an unrelated CA
    rogue_client_cert: Path  # signed by ``rogue_ca``
    rogue_client_key: Path


def make_pki(out: Path) -> Pki:
    """Generate a small PKI under ``out`` (EC P-256 keys, valid for a day)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        k = key()
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn)).public_key(k.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(k, hashes.SHA256()))
        return cert, k

    def leaf(cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], server: bool):
        k = key()
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer[0].subject)
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(issuer[1], hashes.SHA256()), k

    def write(path: Path, obj: object) -> Path:
        if isinstance(obj, x509.Certificate):
            path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(obj.private_bytes(serialization.Encoding.PEM,  # type: ignore[attr-defined]
                                               serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return path

    out.mkdir(parents=True, exist_ok=True)
    good, rogue = ca("eddy test CA"), ca("rogue CA")
    server, client, rogue_client = leaf("localhost", good, True), leaf("client", good, False), \
        leaf("rogue", rogue, False)
    return Pki(ca=write(out / "ca.pem", good[0]), server_cert=write(out / "server.pem", server[0]),
               server_key=write(out / "server.key", server[1]), client_cert=write(out / "client.pem", client[0]),
               client_key=write(out / "client.key", client[1]), rogue_ca=write(out / "rogue-ca.pem", rogue[0]),
               rogue_client_cert=write(out / "rogue.pem", rogue_client[0]),
               rogue_client_key=write(out / "rogue.key", rogue_client[1]))
