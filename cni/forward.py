"""The thin side of a plugin: hand the raw CNI call to the node service, print its answer.

This module is also the body of the installed `spidernet-ipam` executable, which runs under
`python -I -S`: it may import only modules built into the interpreter (`posix`, `sys`,
`_socket`) at module level (DESIGN.md, "Thin plugins, hot node service": every import is paid
on every call; `import os` alone costs ~2 ms, as does `from __future__`, so this module uses
neither). `json` is imported only on paths that need it (an error, or an escaped socket path).

The wire is HTTP/1.1 over the service's unix socket: `POST /v1/cni/<plugin>`, the stdin
config as the body and each CNI_* variable as a `Cni-Env: NAME=value` header. The service
runs the plugin's verb and answers 200 with the plugin's stdout as the body and its exit
status in a `Cni-Exit` header, then closes the connection.
"""

import _socket
import posix
import sys

# `typing` is not imported at run time (it costs milliseconds per call); mypy reads this.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

DEFAULT_SOCKET = "/run/spidernet/spidernet.sock"
SOCKET_ENV = "SPIDERNET_SOCKET"
# Spiderpool's IPAM config key for the agent socket (reference/spiderpool.md §2.10): under
# `ipam` in a main plugin's config (what spidernet-ipam is given), at the top of the
# coordinator's and the ifacer's.
SOCKET_KEY = b"ipam_unix_socket_path"
# Spiderpool's CNI client gives IPAM calls 100 s (§8).
TIMEOUT_S = 100.0
TRY_AGAIN_LATER = 11
INVALID_ENVIRONMENT = 4


def _config_socket(stdin: bytes) -> str:
    """The config's `ipam_unix_socket_path` (at the top, or under `ipam`), found by a plain
    scan rather than `json`: importing json, and the `re` it pulls in, costs more than the
    rest of the forwarder. A value with an escape sequence, or a key not in the plain
    `"key": "value"` form, falls back to json: the top-level value, else `ipam`'s."""
    at = stdin.find(b'"' + SOCKET_KEY + b'"')
    if at < 0:
        return ""
    rest = stdin[at + len(SOCKET_KEY) + 2 :].lstrip(b" \t\r\n")
    if rest[:1] == b":":
        rest = rest[1:].lstrip(b" \t\r\n")
        end = rest.find(b'"', 1)
        if rest[:1] == b'"' and end > 0 and b"\\" not in rest[1:end]:
            return rest[1:end].decode("utf-8", "replace")
    import json

    key = SOCKET_KEY.decode()
    try:
        conf = json.loads(stdin)
        path = conf.get(key)
        ipam = conf.get("ipam", {})
        if not isinstance(path, str) and isinstance(ipam, dict):
            path = ipam.get(key)
    except (ValueError, AttributeError):
        return ""
    return path if isinstance(path, str) else ""


def socket_path(stdin: bytes, environ: dict[str, str]) -> str:
    """The service socket: the config's `ipam_unix_socket_path`, else $SPIDERNET_SOCKET,
    else the default."""
    return _config_socket(stdin) or environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def request_bytes(plugin: str, environ: dict[str, str], stdin: bytes) -> bytes:
    """The HTTP request for one call; raises ValueError for a variable no header can carry."""
    lines = [
        f"POST /v1/cni/{plugin} HTTP/1.1",
        "Host: spidernet",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(stdin)}",
    ]
    for name in sorted(environ):
        if name.startswith("CNI_"):
            value = environ[name]
            if "\r" in value or "\n" in value or "\0" in value:
                raise ValueError(f"{name} holds a line break or NUL")
            lines.append(f"Cni-Env: {name}={value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + stdin


def parse_response(data: bytes) -> tuple[int, bytes]:
    """The exit status and stdout carried by the service's answer; ValueError if malformed."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("incomplete answer: the connection closed early; did the service restart?")
    lines = head.decode("latin-1").split("\r\n")
    exit_status = None
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key == "cni-exit":
            exit_status = int(value.strip())
        elif key == "content-length":
            length = int(value.strip())
    if exit_status is None:
        raise ValueError(f"no Cni-Exit header in answer '{lines[0]}'")
    if length is not None and len(body) != length:
        raise ValueError(f"answer body is {len(body)} bytes, header says {length}")
    return exit_status, body


class ServiceAbsent(OSError):
    """Nothing listens on the socket (the connect failed): nothing was sent."""


def exchange(path: str, request: bytes, timeout: float = TIMEOUT_S) -> bytes:
    """Send `request` to the unix socket at `path` and read the answer until EOF; raises
    ServiceAbsent when the connect fails, OSError for later failures."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            raise ServiceAbsent(e.errno, e.strerror) from e
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    return b"".join(chunks)


def error_json(code: int, msg: str, details: str = "") -> bytes:
    """A CNI error object (built only on error paths, so `json` may be imported here)."""
    import json

    obj = {"cniVersion": "1.0.0", "code": code, "msg": msg}
    if details:
        obj["details"] = details
    return (json.dumps(obj) + "\n").encode()


def _unreachable(plugin: str, path: str, e: OSError) -> tuple[int, bytes, str]:
    why = e.strerror or type(e).__name__
    msg = f"{plugin}: the spidernet service is not reachable at {path}: {why}"
    hint = (
        "start it with `spidernet serve`, or name its socket in the config "
        "(ipam_unix_socket_path) or $SPIDERNET_SOCKET"
    )
    return 1, error_json(TRY_AGAIN_LATER, msg, hint), msg + "\n"


def forward(
    plugin: str, environ: dict[str, str], stdin: bytes, *, fallback: bool = False
) -> tuple[int, bytes, str]:
    """Run one call through the service: (exit status, stdout bytes, stderr text). With
    `fallback`, a service that is not there raises ServiceAbsent instead of answering 11."""
    path = socket_path(stdin, environ)
    try:
        request = request_bytes(plugin, environ, stdin)
    except ValueError as e:
        msg = f"{plugin}: invalid CNI environment: {e}"
        return 1, error_json(INVALID_ENVIRONMENT, msg), msg + "\n"
    try:
        answer = exchange(path, request)
        status, body = parse_response(answer)
    except ServiceAbsent as e:
        if fallback:
            raise
        return _unreachable(plugin, path, e)
    except OSError as e:
        return _unreachable(plugin, path, e)
    except ValueError as e:
        msg = f"{plugin}: malformed answer from the spidernet service at {path}: {e}"
        return 1, error_json(TRY_AGAIN_LATER, msg), msg + "\n"
    return status, body, ""


def environ() -> dict[str, str]:
    """The process environment as text (what `os.environ` gives, without importing os)."""
    return {
        k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
        for k, v in posix.environ.items()
    }


def run_locally(argv: list[str], stdin: bytes) -> "NoReturn":
    """Replace this process with `argv` (the plugin doing the work itself), handing it the
    stdin already read through a memfd (memfd_create(2)). Imports os: a fallback path."""
    import os

    fd = os.memfd_create("cni-stdin")
    os.write(fd, stdin)
    os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)
    os.close(fd)
    try:
        os.execv(argv[0], argv)
    except OSError as e:
        msg = f"failed to start {argv[0]}: {e.strerror}"
        sys.stdout.buffer.write(error_json(TRY_AGAIN_LATER, msg))
        sys.stdout.flush()
        sys.stderr.write(msg + "\n")
        sys.exit(1)


def main(plugin: str, version_json: str, fallback: list[str] | None = None) -> None:
    """Process entry: answer VERSION here, forward every other call, print the answer and
    exit with its status. With `fallback` (an argv), a service that is not there means the
    plugin runs `fallback` in this process's place, which does the work itself."""
    env = environ()
    if env.get("CNI_COMMAND") == "VERSION":
        sys.stdout.write(version_json)
        sys.exit(0)
    stdin = sys.stdin.buffer.read()
    try:
        status, out, err = forward(plugin, env, stdin, fallback=fallback is not None)
    except ServiceAbsent:
        assert fallback is not None
        run_locally(fallback, stdin)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    if err:
        sys.stderr.write(err)
    sys.exit(status)
