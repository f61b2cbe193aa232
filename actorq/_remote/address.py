"""Addresses a runtime host listens on and clients connect to, and opening them."""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener
from anyio.streams.tls import TLSListener, TLSStream

from .._exceptions import InvalidOptionError


def parse(field: str, value: object) -> tuple[str, int] | str:
    """``"HOST:PORT"`` (``"[::1]:7311"``) as (host, port), ``"unix:/path"`` as the path;
    with an ``actorq://`` scheme for a client's URL."""
    if not isinstance(value, str) or not value:
        raise InvalidOptionError(field, value, "must be 'HOST:PORT' or 'unix:/path'")
    text = value.removeprefix("actorq://")
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise InvalidOptionError(field, value, "names no socket path")
        return path
    host, sep, port = text.rstrip("/").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidOptionError(field, value, "must be 'HOST:PORT' or 'unix:/path'")
    return host, int(port)


def is_loopback(address: tuple[str, int] | str) -> bool:
    """Whether only this machine can reach `address` (a Unix socket, or a loopback IP)."""
    if isinstance(address, str):
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def listen(address: tuple[str, int] | str, tls: ssl.SSLContext | None) -> Listener[Any]:
    listener: Listener[Any]
    if isinstance(address, str):
        listener = await anyio.create_unix_listener(address)
    else:
        listener = await anyio.create_tcp_listener(local_host=address[0], local_port=address[1])
    if tls is not None:
        listener = TLSListener(listener, tls, standard_compatible=False)
    return listener


def bound(listener: Listener[Any], address: tuple[str, int] | str) -> str:
    """What a client connects to: the address with the port the system chose for port 0."""
    if isinstance(address, str):
        return f"unix:{address}"
    inner = listener.listener if isinstance(listener, TLSListener) else listener
    sockname = inner.extra(anyio.abc.SocketAttribute.local_address)
    host = sockname[0]
    return f"[{host}]:{sockname[1]}" if ":" in host else f"{host}:{sockname[1]}"


async def connect(address: tuple[str, int] | str, tls: ssl.SSLContext | None) -> ByteStream:
    stream: ByteStream
    if isinstance(address, str):
        stream = await anyio.connect_unix(address)
    else:
        stream = await anyio.connect_tcp(address[0], address[1])
    if tls is not None:
        hostname = None if isinstance(address, str) else address[0]
        try:
            stream = await TLSStream.wrap(
                stream, hostname=hostname, ssl_context=tls, standard_compatible=False
            )
        except BaseException:
            await anyio.aclose_forcefully(stream)  # a refused handshake leaves no socket open
            raise
    return stream
