"""A real asyncua client for the OPC UA tests: connect (retrying while the server starts), read, call."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from asyncua import Client, Node, ua
from asyncua.ua.ua_binary import struct_from_binary
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edge_ad.opcua.certs import make_certificate

__all__ = ["CLIENT_URI", "call_with_reason", "client_certificate", "session", "station_node", "wait_listening"]

CLIENT_URI = "urn:edge_ad:tests:client"


def client_certificate(folder: Path, uri: str = CLIENT_URI) -> tuple[Path, Path]:
    """A client application certificate (DER) and its key (PEM) for a signed channel."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = make_certificate(key, uri, "edge_ad tests", ["localhost"], server=False)
    cert_path, key_path = folder / "client.der", folder / "client.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def wait_listening(url: str, timeout: float = 60.0) -> None:
    """Poll until the server answers GetEndpoints (its start loads the standard address space: seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await Client(url, timeout=2).connect_and_get_server_endpoints()
            return
        except (OSError, asyncio.TimeoutError, ua.UaError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def session(
    url: str,
    user: str | None = None,
    password: str | None = None,
    security: str | None = None,
    certificate: tuple[Path, Path] | None = None,
    timeout: float = 60.0,
) -> AsyncIterator[Client]:
    """A connected client; ``security`` like ``Basic256Sha256,SignAndEncrypt`` (needs ``certificate``)."""
    await wait_listening(url, timeout)
    client = Client(url, timeout=30)
    client.application_uri = CLIENT_URI
    if user is not None:
        client.set_user(user)
    if password is not None:
        client.set_password(password)
    if security is not None:
        assert certificate is not None
        await client.set_security_string(f"{security},{certificate[0]},{certificate[1]}")
    await client.connect()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


async def station_node(client: Client, station: str) -> tuple[int, Node]:
    """The namespace index of ``urn:edge_ad:<station>`` and the Station object."""
    ns = await client.get_namespace_index(f"urn:edge_ad:{station}")
    return ns, client.get_node(f"ns={ns};s=Station")


async def call_with_reason(
    client: Client, ns: int, method: str, *args: object
) -> tuple[ua.StatusCode, list, str | None]:
    """Call ``Station.<method>`` asking for operation diagnostics: (status, outputs, the reason it gave).

    asyncua's ``call_method`` drops the CallResponse's DiagnosticInfos, so this sends the CallRequest itself
    with ``ReturnDiagnostics`` = localized text | additional info and checks the two agree.
    """
    request = ua.CallRequest()
    request.RequestHeader.ReturnDiagnostics = 0x40 | 0x80
    request.Parameters.MethodsToCall = [
        ua.CallMethodRequest(
            ObjectId=ua.NodeId("Station", ns),
            MethodId=ua.NodeId(f"Station.{method}", ns),
            InputArguments=[ua.Variant(arg) for arg in args],
        )
    ]
    data = await client.uaclient.protocol.send_request(request)
    response = struct_from_binary(ua.CallResponse, data)
    response.ResponseHeader.ServiceResult.check()
    (result,) = response.Results
    (info,) = response.DiagnosticInfos
    outputs = [v.Value for v in result.OutputArguments]
    if info.LocalizedText is not None:
        assert response.ResponseHeader.StringTable[info.LocalizedText] == info.AdditionalInfo
    return result.StatusCode, outputs, info.AdditionalInfo
