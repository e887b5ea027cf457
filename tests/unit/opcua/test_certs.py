from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edge_ad.errors import ConfigError
from edge_ad.opcua.certs import (
    CERT_FILE,
    KEY_FILE,
    ClientTrust,
    application_uri_of,
    check_configured_pair,
    ensure_server_certificate,
    load_certificate,
    make_certificate,
)

URI = "urn:edge_ad:line3-cam1:server"


def client_cert(uri: str = "urn:ua-expert", days: int = 30) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return make_certificate(key, uri, "client", ["localhost"], server=False, days=days)


def expired_cert() -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "old")])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = builder.serial_number(1).not_valid_before(now - datetime.timedelta(days=9))
    return builder.not_valid_after(now - datetime.timedelta(days=1)).sign(key, hashes.SHA256())


def test_made_on_first_start_with_a_private_key_and_kept(tmp_path):
    folder = tmp_path / "opcua"
    cert_path, key_path = ensure_server_certificate(folder, URI, ["10.0.0.5", "line3-pc"])
    assert (cert_path.name, key_path.name) == (CERT_FILE, KEY_FILE)
    assert key_path.stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700
    cert = load_certificate(cert_path)
    assert application_uri_of(cert) == URI
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "line3-pc" in san.get_values_for_type(x509.DNSName)
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and usage.key_encipherment and usage.data_encipherment
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > datetime.timedelta(days=3000)
    before = cert_path.read_bytes()
    assert ensure_server_certificate(folder, URI, []) == (cert_path, key_path)
    assert cert_path.read_bytes() == before, "a second start must reuse the certificate clients already trust"


def test_a_loosened_key_is_tightened_and_a_renamed_station_gets_a_new_certificate(tmp_path):
    cert_path, key_path = ensure_server_certificate(tmp_path, URI, [])
    key_path.chmod(0o644)
    ensure_server_certificate(tmp_path, URI, [])
    assert key_path.stat().st_mode & 0o777 == 0o600
    ensure_server_certificate(tmp_path, "urn:edge_ad:other:server", [])
    assert application_uri_of(load_certificate(cert_path)) == "urn:edge_ad:other:server"
    key_path.write_text("damaged")
    ensure_server_certificate(tmp_path, URI, [])
    assert application_uri_of(load_certificate(cert_path)) == URI
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_a_configured_pair_must_load_and_belong_together(tmp_path):
    cert_path, key_path = ensure_server_certificate(tmp_path / "a", URI, [])
    check_configured_pair(cert_path, key_path)
    _, other_key = ensure_server_certificate(tmp_path / "b", URI, [])
    with pytest.raises(ConfigError, match="is not the key of"):
        check_configured_pair(cert_path, other_key)
    with pytest.raises(ConfigError, match=r"opcua\.certificate: cannot load"):
        check_configured_pair(tmp_path / "none.der", key_path)


def test_only_trusted_client_certificates_and_the_refused_are_kept_for_the_administrator(tmp_path):
    trusted, rejected = tmp_path / "trusted", tmp_path / "rejected"
    trusted.mkdir()
    good, stranger = client_cert(), client_cert()
    (trusted / "good.pem").write_bytes(good.public_bytes(serialization.Encoding.PEM))
    (trusted / "README").write_text("not a certificate")
    trust = ClientTrust(trusted, rejected)
    assert trust.check(good) is None
    assert "not in" in trust.check(stranger)
    assert len(list(rejected.iterdir())) == 1
    (trusted / "stranger.der").write_bytes(next(rejected.iterdir()).read_bytes())  # the administrator trusts it
    assert trust.check(stranger) is None  # no restart needed
    assert ClientTrust(None, rejected).check(client_cert()) is None  # no folder: any certificate
    assert "not valid now" in ClientTrust(None, rejected).check(expired_cert())
