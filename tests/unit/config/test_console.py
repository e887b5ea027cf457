from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_ad.config import ConsoleConfig


def test_defaults_are_safe():
    console = ConsoleConfig()
    assert (console.host, console.port, console.tls) == ("127.0.0.1", 8443, True)
    assert console.login_attempts_per_minute == 5


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "panel.local", "::"])
def test_plain_http_off_loopback_is_refused(host):
    with pytest.raises(ValidationError, match="in clear over the network"):
        ConsoleConfig(host=host, tls=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_plain_http_on_loopback_is_allowed(host):
    assert ConsoleConfig(host=host, tls=False).tls is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tls_cert": "c.pem"}, "give both or neither"),
        ({"tls_key": "k.pem"}, "give both or neither"),
        ({"tls": False, "tls_cert": "c.pem", "tls_key": "k.pem"}, "tls is false"),
        ({"port": 0}, "greater than or equal to 1"),
        ({"login_attempts_per_minute": 0}, "greater than or equal to 1"),
        ({"host": "a b"}, "should match pattern"),
        ({"listen": "x"}, "Extra inputs"),
    ],
)
def test_refused(values, message):
    with pytest.raises(ValidationError, match=message):
        ConsoleConfig(**values)


def test_relative_paths_resolve_next_to_the_config():
    console = ConsoleConfig(users_file="u.json", tls_cert="tls/c.pem", tls_key="/etc/k.pem").with_base(Path("/srv"))
    assert console.users_file == Path("/srv/u.json")
    assert console.tls_cert == Path("/srv/tls/c.pem")
    assert console.tls_key == Path("/etc/k.pem")
    assert ConsoleConfig().with_base(Path("/srv")).users_file is None


def test_relative_console_files_are_found_next_to_the_station_file_by_every_caller(tmp_path):
    from edge_ad.config import load_config

    path = tmp_path / "station.yaml"
    path.write_text("station: s\ncamera: {source: 0}\nmodel: {path: m}\nconsole: {users_file: users.json}\n")
    assert load_config(path).console.users_file == tmp_path.resolve() / "users.json"
