"""Certificates of the OPC UA server: its own (made once, kept in the state directory) and the clients' it trusts.

The server certificate is a self-signed OPC UA application instance certificate (OPC 10000-6
6.2.2): RSA 2048, SHA-256, the application URI and the host names in subjectAltName. The key is
written with mode 0600 before any byte of it, and both files are replaced atomically.
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
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_ad.errors import ConfigError

__all__ = [
    "CERT_FILE",
    "KEY_FILE",
    "MAX_REJECTED",
    "ClientTrust",
    "application_uri_of",
    "check_configured_pair",
    "ensure_server_certificate",
    "load_certificate",
    "make_certificate",
]

logger = logging.getLogger(__name__)

CERT_FILE = "server_cert.der"
KEY_FILE = "server_key.pem"
VALID_DAYS = 3650
MAX_REJECTED = 100  # client certificates kept in rejected/ for an administrator to trust


def make_certificate(
    key: rsa.RSAPrivateKey,
    application_uri: str,
    common_name: str,
    hostnames: list[str],
    server: bool = True,
    days: int = VALID_DAYS,
) -> x509.Certificate:
    """A self-signed OPC UA application instance certificate.

    Args:
        key: The application's private key.
        application_uri: Goes into subjectAltName (clients and servers check it against the ApplicationUri).
        common_name: Subject CN (the application name).
        hostnames: DNS names and IP addresses of the machine (subjectAltName).
        server: serverAuth and clientAuth usage (a server) or clientAuth only (a client).
        days: Validity from now.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in dict.fromkeys(h for h in hostnames if h):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    usages = (
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        if server
        else [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # a client whose clock is a little behind
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)  # self-signed: its own issuer
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def load_certificate(path: Path) -> x509.Certificate:
    """A certificate from a DER or PEM file.

    Raises:
        ValueError: Neither DER nor PEM.
        OSError: The file cannot be read.
    """
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def application_uri_of(cert: x509.Certificate) -> str | None:
    """The first URI in the certificate's subjectAltName, if any."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file created with ``mode``, fsync it and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _usable(cert_path: Path, key_path: Path, application_uri: str) -> str | None:
    """Why the pair in the state directory must be made again, or None to keep it."""
    try:
        cert = load_certificate(cert_path)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        return "the key does not belong to the certificate"
    if application_uri_of(cert) != application_uri:
        return f"it names {application_uri_of(cert)!r}, not {application_uri!r} (station renamed?)"
    if cert.not_valid_after_utc <= datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1):
        return f"it expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def ensure_server_certificate(folder: Path, application_uri: str, hostnames: list[str]) -> tuple[Path, Path]:
    """The server's certificate and key in ``folder``, made on first use (and again if unusable).

    Args:
        folder: ``<service.state_dir>/opcua``; created with mode 0700.
        application_uri: The server's ApplicationUri (subjectAltName URI).
        hostnames: Names and addresses the certificate is for (besides this machine's host name).

    Returns:
        Paths of the DER certificate and the PEM key (mode 0600).
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if cert_path.exists() or key_path.exists():
        problem = _usable(cert_path, key_path, application_uri)
        if problem is None:
            if key_path.stat().st_mode & 0o077:
                logger.warning("opcua: %s was readable by others; mode set to 0600", key_path)
                key_path.chmod(0o600)
            return cert_path, key_path
        logger.warning("opcua: making a new server certificate in %s: the old one is unusable: %s", folder, problem)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = make_certificate(key, application_uri, f"edge_ad {application_uri}", [socket.gethostname(), *hostnames])
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(key_path, pem, 0o600)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.DER), 0o644)
    logger.info(
        "opcua: server certificate made: %s (sha1 %s; trust it in the client)",
        cert_path,
        cert.fingerprint(hashes.SHA1()).hex(":"),  # the thumbprint OPC UA tools show
    )
    return cert_path, key_path


def check_configured_pair(cert_path: Path, key_path: Path) -> None:
    """Fail with one line when a configured certificate/key pair cannot be used.

    Raises:
        ConfigError: Unreadable, not DER/PEM, or a key of another certificate.
    """
    try:
        cert = load_certificate(cert_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"opcua.certificate: cannot load {cert_path} ({type(exc).__name__}: {exc})") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"opcua.private_key: cannot load {key_path} ({type(exc).__name__}: {exc}); an unencrypted PEM key"
        ) from None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise ConfigError(f"opcua.private_key: {key_path} is not the key of {cert_path}")


class ClientTrust:
    """Client application certificates allowed to open a signed channel: those in a folder, read at every check.

    Args:
        trusted: Folder of trusted certificates (DER or PEM); None trusts every certificate.
        rejected: Where refused certificates are copied (at most :data:`MAX_REJECTED`), so an
            administrator can move one into ``trusted``.
    """

    def __init__(self, trusted: Path | None, rejected: Path) -> None:
        self.trusted = trusted
        self.rejected = rejected

    def _thumbprints(self) -> set[bytes]:
        assert self.trusted is not None
        found = set()
        for path in sorted(self.trusted.iterdir()) if self.trusted.is_dir() else []:
            try:
                found.add(load_certificate(path).fingerprint(hashes.SHA256()))
            except (OSError, ValueError):
                continue  # not a certificate (a README, a key): ignored
        return found

    def check(self, cert: x509.Certificate) -> str | None:
        """None when ``cert`` may connect, else why not (a refused one is kept in ``rejected``)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if not start <= now <= end:
            return f"certificate not valid now ({start:%Y-%m-%d} .. {end:%Y-%m-%d})"
        if self.trusted is None or cert.fingerprint(hashes.SHA256()) in self._thumbprints():
            return None
        self._keep(cert)
        return f"certificate {cert.subject.rfc4514_string()} not in {self.trusted}"

    def _keep(self, cert: x509.Certificate) -> None:
        try:
            self.rejected.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.rejected / f"{cert.fingerprint(hashes.SHA1()).hex()}.der"  # the thumbprint tools show
            if not path.exists() and len(list(self.rejected.iterdir())) < MAX_REJECTED:
                path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        except OSError as exc:
            logger.warning("opcua: cannot keep a rejected client certificate in %s (%s)", self.rejected, exc)
