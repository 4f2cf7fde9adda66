"""The namespace broker: a single-threaded helper process that works inside namespaces.

    python -I -m spidernet.node.access.broker_main FD

FD is its end of a SOCK_SEQPACKET socket pair with the node service. Each request is one
JSON message; for each the broker enters the request's network namespace with setns(2),
does one thing there, returns to its own namespace and answers with one JSON message:

- `socket`: creates a socket (netlink, packet, ...) and passes its descriptor back with
  SCM_RIGHTS. A socket belongs to the namespace it was created in for its whole life
  (network_namespaces(7)), so the service uses it from its own namespace;
- `sysctl`: reads and writes keys under /proc/sys/net, which shows the namespace of the
  task that opens it;
- `nft`: runs an nftables script in one transaction (libnftables; the `nft` program when
  the library cannot be loaded).

Why a process: a namespace belongs to a thread, and the service is threaded (trio's worker
threads), so no thread of the service ever calls setns (STYLE.md §5). pyroute2's opener
forks a child per socket for the same reason; this is that child, kept alive, which takes
a fork (about 10 ms) out of every socket. The broker imports nothing heavy, exits when the
service closes its end, and asks the kernel to kill it when the service dies.
"""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import errno
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from spidernet.node import nft
from spidernet.node.errors import NodeError
from spidernet.node.netns import NetnsGone, NotANetns, check, sysctl_path

MAX_MESSAGE = 1 << 16
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
NFT_TIMEOUT_S = 10

Reply = tuple[dict[str, Any], list[int]]


class Failed(NodeError):
    """A request that failed; `errno` travels back with the message."""

    def __init__(self, message: str, code: int = errno.EINVAL, *, gone: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.gone = gone  # the namespace itself does not exist


class _Libc:
    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)

    def setns(self, fd: int) -> None:
        if self._libc.setns(fd, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def die_with_parent(self) -> None:
        self._libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # SIGKILL


class _Nft:
    """libnftables through ctypes (the library `nft` itself is built on); None when absent."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        lib = ctypes.CDLL(name)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        self._lib = lib

    def run(self, script: str) -> str | None:
        """Run `script` in the current namespace; None on success, else nft's message."""
        # A context per script: its netlink socket is then opened in this namespace.
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            return "failed to create an nftables context"
        try:
            self._lib.nft_ctx_buffer_output(ctx)
            self._lib.nft_ctx_buffer_error(ctx)
            if self._lib.nft_run_cmd_from_buffer(ctx, script.encode()) == 0:
                return None
            raw = self._lib.nft_ctx_get_error_buffer(ctx) or b""
            return raw.decode(errors="replace")
        finally:
            self._lib.nft_ctx_free(ctx)


def _run_nft_program(script: str) -> str | None:
    try:
        proc = subprocess.run(
            ["nft", "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            check=False,
            timeout=NFT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if proc.returncode == 0 else proc.stderr or f"exit status {proc.returncode}"


class Broker:
    """The request handlers, around the namespace switch."""

    def __init__(self) -> None:
        self._libc = _Libc()
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._nft: _Nft | None = _Nft()
        except OSError:
            self._nft = None

    def handle(self, request: Mapping[str, Any]) -> Reply:
        handlers: dict[str, Callable[[Mapping[str, Any]], Reply]] = {
            "socket": self._socket,
            "sysctl": self._sysctl,
            "nft": self._nft_script,
            "ping": lambda _: ({"pid": os.getpid(), "nft": self._nft is not None}, []),
        }
        handler = handlers.get(str(request.get("op")))
        if handler is None:
            raise Failed(f"unknown request {request.get('op')!r}")
        path = request.get("netns")
        if path is None:
            return handler(request)
        # `label`: the path the service's caller gave, when the broker is handed another
        # path to the same namespace (node/netns.py, "the caller's view").
        self._enter(str(path), str(request.get("label") or path))
        try:
            return handler(request)
        finally:
            # Back home, or stop: a broker left in a pod's namespace would act there next.
            try:
                self._libc.setns(self._home)
            except OSError:
                os._exit(3)

    def _enter(self, path: str, label: str) -> None:
        try:
            check(path)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (NetnsGone, FileNotFoundError) as e:
            raise Failed(
                f"network namespace '{label}' does not exist", errno.ENOENT, gone=True
            ) from e
        except NotANetns as e:
            raise Failed(str(e).replace(path, label)) from e
        try:
            self._libc.setns(fd)
        except OSError as e:
            raise Failed(
                f"failed to enter network namespace '{label}': {e.strerror}", e.errno or 0
            ) from e
        finally:
            os.close(fd)

    @staticmethod
    def _socket(request: Mapping[str, Any]) -> Reply:
        family, kind, proto = int(request["family"]), int(request["type"]), int(request["proto"])
        try:
            sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
        except OSError as e:
            raise Failed(f"failed to create a socket: {e.strerror}", e.errno or 0) from e
        return {}, [sock.detach()]

    @staticmethod
    def _sysctl(request: Mapping[str, Any]) -> Reply:
        values: dict[str, str] = {}
        for key in request.get("read", []):
            try:
                with open(sysctl_path(str(key)), encoding="ascii") as f:
                    values[str(key)] = f.read().strip()
            except FileNotFoundError:
                continue  # a key this kernel (or a link already gone) lacks: left out
            except ValueError as e:
                raise Failed(str(e)) from e
        missing_ok = bool(request.get("missing_ok", False))
        for key, value in request.get("write", []):
            try:
                with open(sysctl_path(str(key)), "w", encoding="ascii") as f:
                    f.write(str(value))
            except FileNotFoundError as e:
                if not missing_ok:
                    raise Failed(f"sysctl '{key}' does not exist", errno.ENOENT) from e
            except ValueError as e:
                raise Failed(str(e)) from e
            except OSError as e:
                raise Failed(f"failed to set sysctl '{key}': {e.strerror}", e.errno or 0) from e
        return {"values": values}, []

    def _nft_script(self, request: Mapping[str, Any]) -> Reply:
        script = str(request["script"])
        error = self._nft.run(script) if self._nft is not None else _run_nft_program(script)
        if error is not None:
            raise Failed(nft.reason(error))
        return {}, []


def serve(sock: socket.socket) -> None:
    """Answer requests on `sock` until the other end closes it."""
    broker = Broker()
    while True:
        try:
            data = sock.recv(MAX_MESSAGE)
        except InterruptedError:  # pragma: no cover - retried by Python already (PEP 475)
            continue
        if not data:
            return
        fds: list[int] = []
        try:
            answer, fds = broker.handle(json.loads(data))
            answer = {"ok": True, **answer}
        except Failed as e:
            answer = {"ok": False, "error": str(e), "errno": e.code, "gone": e.gone}
        except (ValueError, KeyError, TypeError) as e:
            answer = {"ok": False, "error": f"bad request: {e}", "errno": errno.EINVAL}
        ancillary = []
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        try:
            sock.sendmsg([json.dumps(answer).encode()], ancillary)
        finally:
            for fd in fds:
                os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        sys.stderr.write("usage: python -m spidernet.node.access.broker_main FD\n")
        return 2
    _Libc().die_with_parent()
    sock = socket.socket(fileno=int(argv[1]))
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the service went away mid-answer
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
