from __future__ import annotations

import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from edge_ad.config import ConsoleConfig
from edge_ad.console.app import session_secret
from edge_ad.console.tls import ensure_certificate
from edge_ad.errors import ConfigError


def test_generated_certificate_is_reused_and_its_key_private(tmp_path):
    console = ConsoleConfig(host="192.168.10.5")
    cert, key = ensure_certificate(console, tmp_path / "state")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = cert.read_bytes(), key.read_bytes()
    again = ensure_certificate(console, tmp_path / "state")
    assert again == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == first  # kept, not made again
    loaded = x509.load_pem_x509_certificate(first[0])
    assert isinstance(loaded.public_key(), ec.EllipticCurvePublicKey)
    assert loaded.public_key().curve.name == "secp256r1"
    san = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "192.168.10.5" in {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    days = (loaded.not_valid_after_utc - loaded.not_valid_before_utc).days
    assert 729 <= days <= 731


def test_a_new_host_gets_a_new_certificate(tmp_path):
    cert, _ = ensure_certificate(ConsoleConfig(host="127.0.0.1"), tmp_path)
    before = cert.read_bytes()
    ensure_certificate(ConsoleConfig(host="10.0.0.7"), tmp_path)
    assert cert.read_bytes() != before


def test_a_configured_pair_is_used_as_given(tmp_path):
    made_cert, made_key = ensure_certificate(ConsoleConfig(), tmp_path / "other")
    console = ConsoleConfig(tls_cert=made_cert, tls_key=made_key)
    assert ensure_certificate(console, tmp_path / "state") == (made_cert, made_key)
    assert not (tmp_path / "state" / "console").exists()


@pytest.mark.parametrize(("content", "message"), [(None, "No such file"), (b"not pem", "is not a PEM file")])
def test_a_bad_configured_pair_is_one_line(tmp_path, content, message):
    cert = tmp_path / "cert.pem"
    if content is not None:
        cert.write_bytes(content)
    (tmp_path / "key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match=f"console.tls_cert: .*{message}"):
        ensure_certificate(ConsoleConfig(tls_cert=cert, tls_key=tmp_path / "key.pem"), tmp_path / "state")


def test_session_secret_is_private_and_kept(tmp_path):
    secret = session_secret(tmp_path)
    path = tmp_path / "console" / "session.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) >= 48
    assert session_secret(tmp_path) == secret
