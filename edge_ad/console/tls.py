"""HTTPS certificate of the console: the one the config gives, or a self-signed one made on first start and kept.

The generated certificate is ECDSA P-256 / SHA-256, valid 2 years, with the console's host and
``localhost`` in subjectAltName. Its key is written with mode 0600 before any byte of it; both files
are replaced atomically. A browser warns about a self-signed certificate once; give ``console.tls_cert``
and ``console.tls_key`` from the plant's PKI to avoid that.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_ad.config.console import ConsoleConfig
from edge_ad.errors import ConfigError

__all__ = ["CERT_FILE", "KEY_FILE", "VALID_DAYS", "ensure_certificate", "make_certificate"]

logger = logging.getLogger(__name__)

CERT_FILE = "console-cert.pem"
KEY_FILE = "console-key.pem"
VALID_DAYS = 730
RENEW_DAYS = 14  # a generated certificate this close to its end is made again at start


def _hostnames(host: str) -> list[str]:
    names = [host, "localhost", "127.0.0.1"]
    if host in ("0.0.0.0", "::"):  # listening everywhere: the machine's own name is what tablets type
        names[0] = socket.gethostname()
    return list(dict.fromkeys(n for n in names if n))


def make_certificate(key: ec.EllipticCurvePrivateKey, host: str, days: int = VALID_DAYS) -> x509.Certificate:
    """A self-signed server certificate for ``host`` (CN) and ``localhost`` (subjectAltName)."""
    names = _hostnames(host)
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _usable(cert_path: Path, key_path: Path, host: str) -> bool:
    """Whether a generated pair can be kept: both readable, not near its end, made for this host."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return left > datetime.timedelta(days=RENEW_DAYS) and bool(cn) and cn[0].value == _hostnames(host)[0][:64]


def ensure_certificate(console: ConsoleConfig, state_dir: Path) -> tuple[Path, Path]:
    """(certificate, key) to serve: the configured pair, else the generated one (made now when missing).

    Raises:
        ConfigError: A configured file cannot be read or is not PEM.
    """
    if console.tls_cert is not None and console.tls_key is not None:
        for path, what in ((console.tls_cert, "console.tls_cert"), (console.tls_key, "console.tls_key")):
            try:
                head = path.read_bytes()[:4096]
            except OSError as exc:
                raise ConfigError(f"{what}: {path}: {exc.strerror or exc}") from None
            if b"-----BEGIN " not in head:
                raise ConfigError(f"{what}: {path} is not a PEM file")
        return console.tls_cert, console.tls_key
    folder = state_dir / "console"
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if _usable(cert_path, key_path, console.host):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_certificate(key, console.host)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(key_path, key_pem, 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    logger.info("console: made a self-signed certificate %s (SHA-256 %s)", cert_path, fingerprint)
    return cert_path, key_path
