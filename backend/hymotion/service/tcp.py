"""The TCP transport (``hymotion serve --listen``): loopback by default, every connection authenticated with the
server's token before it may send requests.

The login is one line within AUTH_TIMEOUT_S of connecting (a total deadline). Logins and logged-in clients have
slots of their own: at most MAX_CONNECTIONS clients are logged in at once, and at most MAX_PENDING_LOGINS connections
wait for their login line; one more login makes room by hanging up the one that has waited longest, so clients that
never send the token cannot lock out the token holder (who logs in at once). Each logged-in client is a droppable
:class:`~hymotion.service.connection.Connection`: one that stops reading is disconnected with a reason instead of
holding anyone else up.
"""

from __future__ import annotations

import collections
import hmac
import ipaddress
import itertools
import os
import secrets
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from ..shared import errors
from ..shared.protocol import AuthRequest, ErrorEvent, ProtocolError, decode_request
from .connection import Connection
from .core import PARENT_POLL_S, Service, log
from .lines import serve_lines

AUTH_TIMEOUT_S = 10.0
MAX_AUTH_BYTES = 4096
MAX_CONNECTIONS = 16
# Connections waiting for their login line. A real client sends it within milliseconds of connecting, so the oldest
# of the waiting ones is the one to hang up when another arrives.
MAX_PENDING_LOGINS = 16
MIN_TOKEN_CHARS = 16
TOKEN_ENV = "HYMOTION_TOKEN"


def server_token() -> str:
    """$HYMOTION_TOKEN when set (refused when shorter than MIN_TOKEN_CHARS), else a fresh random 43-character one."""
    token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
    if len(token) < MIN_TOKEN_CHARS:
        raise errors.bad_request(
            f"{TOKEN_ENV} holds {len(token)} characters; a token needs at least {MIN_TOKEN_CHARS}.",
            "Unset it to get a random token, or set a longer one.",
        )
    return token


def listen(host: str, port: int) -> socket.socket:
    return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)


def announce(server: socket.socket) -> None:
    """Say where the server listens; clients (and tests) wait for this line, so the token file exists by then."""
    bound_host, bound_port = server.getsockname()[:2]
    print(f"hymotion serve: listening on {bound_host}:{bound_port}", file=sys.stderr, flush=True)
    log.info("listening on %s:%s", bound_host, bound_port)


def serve_tcp(service: Service, server: socket.socket, token: str) -> None:
    """Accept clients until the service stops; each gets its own reader thread, at most MAX_CONNECTIONS at once."""
    server.settimeout(PARENT_POLL_S)
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    logins = _LoginSlots(MAX_PENDING_LOGINS)
    with server:
        while not service.stop_requested.is_set():
            try:
                client, address = server.accept()
            except TimeoutError:
                continue
            threading.Thread(
                target=_serve_socket, args=(service, client, address, token, slots, logins), name="hymotion-client",
                daemon=True,
            ).start()


class _LoginSlots:
    """Connections that have not logged in yet, oldest first; past ``limit`` the oldest is told its login is over."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._waiting: collections.OrderedDict[int, Callable[[], None]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._numbers = itertools.count()

    def enter(self, end_login: Callable[[], None]) -> int:
        with self._lock:
            while len(self._waiting) >= self._limit:
                _, oldest = self._waiting.popitem(last=False)
                oldest()
            number = next(self._numbers)
            self._waiting[number] = end_login
        return number

    def leave(self, number: int) -> None:
        with self._lock:
            self._waiting.pop(number, None)


def _refuse_busy(connection: Connection, address: Any) -> None:
    log.warning("tcp %s:%s: refused, %d clients already logged in", address[0], address[1], MAX_CONNECTIONS)
    connection.send(ErrorEvent(
        code=errors.BAD_REQUEST,
        message=f"The backend already serves {MAX_CONNECTIONS} logged-in connections, its limit.",
        hint="Close connections you no longer use (each client needs one), then connect again.",
    ))


def _serve_socket(
    service: Service, client: socket.socket, address: Any, token: str, slots: threading.BoundedSemaphore,
    logins: _LoginSlots,
) -> None:
    name = f"tcp {address[0]}:{address[1]}"

    def hang_up() -> None:
        try:
            client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def login_over() -> None:
        """The login deadline counts from the connection, not from the last byte: stop reading, refuse below."""
        try:
            client.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    reader = client.makefile("rb")
    connection = Connection(name, client.makefile("wb"), droppable=True, hang_up=hang_up)
    deadline = threading.Timer(AUTH_TIMEOUT_S, login_over)
    deadline.daemon = True
    deadline.start()
    waiting = logins.enter(login_over)
    logged_in = False
    try:
        first = reader.readline(MAX_AUTH_BYTES + 1)
        deadline.cancel()
        logins.leave(waiting)
        if not _authenticated(first, token):
            log.warning("%s: refused (no valid token within %.0f s)", name, AUTH_TIMEOUT_S)
            connection.send(
                ErrorEvent(
                    code=errors.BAD_REQUEST,
                    message=f"The first line must be an auth request with the server's token, sent within "
                    f"{AUTH_TIMEOUT_S:.0f} s of connecting.",
                    hint=f"Send {{\"type\": \"auth\", \"token\": ...}}; the token is in the server's token file "
                    f"or its {TOKEN_ENV} environment variable.",
                    field="token",
                )
            )
            return
        if not slots.acquire(blocking=False):
            _refuse_busy(connection, address)
            return
        logged_in = True
        log.info("%s: connected", name)
        service.attach(connection)
        connection.send(service.hello())
        serve_lines(service, connection, reader)
    except OSError as error:
        log.info("%s: %s", name, error)
    finally:
        deadline.cancel()
        logins.leave(waiting)
        log.info("%s: disconnected", name)
        service.drop_connection(connection)
        connection.close()
        reader.close()
        client.close()
        if logged_in:
            slots.release()


def _authenticated(line: bytes, token: str) -> bool:
    if len(line) > MAX_AUTH_BYTES or not line.endswith(b"\n"):
        return False
    try:
        request = decode_request(line)
    except ProtocolError:
        return False
    return isinstance(request, AuthRequest) and hmac.compare_digest(request.token.encode(), token.encode())


def parse_listen_address(text: str, allow_remote: bool) -> tuple[str, int]:
    """"127.0.0.1:8765" or "[::1]:8765" to (host, port); a non-loopback host needs ``allow_remote``."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise errors.bad_request(f"--listen {text!r} is not HOST:PORT.", "Write it as 127.0.0.1:8765.")
    if not allow_remote and not is_loopback(host):
        raise errors.bad_request(
            f"Refusing to listen on {host}: it is not a loopback address, so other machines could connect.",
            "Use 127.0.0.1, or pass --allow-remote if you mean it (the token is then the only protection and traffic "
            "is not encrypted: tunnel it through ssh instead where you can).",
        )
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        # An IP family's socket address starts with the address as a string (typeshed also allows other families').
        addresses = {address for *_, (address, *_) in socket.getaddrinfo(host, None) if isinstance(address, str)}
    except socket.gaierror:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def write_token(path: Path, token: str) -> None:
    """Write the token to a new file of mode 0600. A symbolic link is refused (it could point the token, or the
    truncation, at another file); an old token file is removed and the new one created exclusively, so a link
    planted in between makes the creation fail instead of being followed."""
    if path.is_symlink():
        raise errors.bad_request(
            f"--token-file {path} is a symbolic link; the token is not written through links.",
            "Remove the link, or give the path of a regular file.",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not path.is_file():
            raise errors.bad_request(f"--token-file {path} is not a file.", "Give the path of a file to write.")
        path.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        descriptor = os.open(path, flags, 0o600)
    except OSError as error:
        raise errors.bad_request(
            f"Cannot create the token file {path}: {error.strerror or error}.",
            "Give a --token-file in a folder you can write to (and where nothing else creates that file).",
        ) from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        if hasattr(os, "fchmod"):
            os.fchmod(handle.fileno(), 0o600)
        handle.write(token + "\n")
