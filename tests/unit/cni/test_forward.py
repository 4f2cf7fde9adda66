"""The thin forwarder: its wire format, its errors, and what the installed executable imports.

The service end here is a socket thread that records the request and plays back a canned
answer: these tests are about the forwarder; the real service is exercised in tests/netns.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from spidernet.cni import forward
from spidernet.cni.launcher import render
from spidernet.node.install import compile_forwarder

ANSWER = b'{"cniVersion": "1.0.0", "ips": []}\n'


class CannedService:
    """Accepts connections on a unix socket, records each request, answers `reply`."""

    def __init__(self, path: Path, reply: bytes) -> None:
        self.path = path
        self.reply = reply
        self.requests: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + body)
                conn.sendall(self.reply)

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept(); shutdown() does (Linux).
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


def reply(status: int, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nCni-Exit: {status}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


@pytest.fixture
def service(tmp_path: Path) -> Iterator[CannedService]:
    svc = CannedService(tmp_path / "s.sock", reply(0, ANSWER))
    yield svc
    svc.close()


ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "PATH": "/bin"}


@pytest.fixture(params=["compiled", "python"])
def exe(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The spidernet-ipam executable, as install-cni writes it: compiled from forward.c, or
    the Python forwarder. Every behaviour below holds for both."""
    path = tmp_path / "spidernet-ipam"
    if request.param == "compiled":
        assert compile_forwarder("spidernet-ipam", path) == ""  # no warnings
    else:
        path.write_text(render("spidernet-ipam", sys.executable))
    path.chmod(0o755)
    return path


def call(exe: Path, env: dict[str, str], stdin: bytes) -> tuple[int, bytes, str]:
    done = subprocess.run(
        [str(exe)], input=stdin, env=env, capture_output=True, timeout=30, check=False
    )
    return done.returncode, done.stdout, done.stderr.decode()


def test_a_call_is_forwarded_with_its_environment_and_stdin(
    exe: Path, service: CannedService
) -> None:
    env = {**ENV, "SPIDERNET_SOCKET": str(service.path)}
    status, out, err = call(exe, env, b'{"a": 1}')
    assert (status, out, err) == (0, ANSWER, "")
    [request] = service.requests
    assert request.startswith(b"POST /v1/cni/spidernet-ipam HTTP/1.1\r\n")
    assert b"Cni-Env: CNI_COMMAND=ADD\r\n" in request
    assert b"Cni-Env: CNI_CONTAINERID=c1\r\n" in request
    assert b"PATH" not in request  # only CNI_* variables travel
    assert request.endswith(b'\r\n\r\n{"a": 1}')
    # The Python forwarder, in-process, sends exactly the same bytes.
    assert forward.request_bytes("spidernet-ipam", env, b'{"a": 1}') == request


def _interpreter(path: Path) -> bool:
    """True when the ELF executable names a dynamic loader (a PT_INTERP program header)."""
    data = path.read_bytes()
    phoff = int.from_bytes(data[0x20:0x28], "little")
    size, count = (int.from_bytes(data[o : o + 2], "little") for o in (0x36, 0x38))
    types = [
        int.from_bytes(data[phoff + i * size : phoff + i * size + 4], "little")
        for i in range(count)
    ]
    return 3 in types  # PT_INTERP


def test_the_compiled_forwarder_is_static(tmp_path: Path) -> None:
    # It is copied onto nodes whose C library may be older than the one it was built with
    # (the image's): it must need no dynamic loader and no shared library at all.
    path = tmp_path / "spidernet-ipam"
    assert compile_forwarder("spidernet-ipam", path) == ""
    assert path.read_bytes()[:4] == b"\x7fELF"
    assert not _interpreter(path)
    dynamic = tmp_path / "dynamic"
    subprocess.run(
        ["cc", "-x", "c", "-o", str(dynamic), "-"], input=b"int main(void){return 0;}", check=True
    )
    assert _interpreter(dynamic)  # the check itself tells the two apart


def test_version_is_answered_without_the_service(exe: Path) -> None:
    status, out, _ = call(exe, {"CNI_COMMAND": "VERSION"}, b"")
    assert status == 0
    assert json.loads(out)["supportedVersions"][-1] == "1.1.0"


def test_the_plugin_exit_status_comes_back(exe: Path, tmp_path: Path) -> None:
    svc = CannedService(tmp_path / "s.sock", reply(1, b'{"code": 7, "msg": "bad"}'))
    try:
        status, out, _ = call(exe, {**ENV, "SPIDERNET_SOCKET": str(svc.path)}, b"{}")
    finally:
        svc.close()
    assert status == 1
    assert json.loads(out)["code"] == 7


def test_an_unreachable_service_is_try_again_later(exe: Path, tmp_path: Path) -> None:
    env = {**ENV, "SPIDERNET_SOCKET": str(tmp_path / "none.sock")}
    status, out, err = call(exe, env, b"{}")
    assert status == 1
    obj = json.loads(out)
    assert obj["code"] == 11
    assert str(tmp_path / "none.sock") in obj["msg"]
    assert "spidernet serve" in obj["details"]
    assert "not reachable" in err


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "no Cni-Exit header"),
        (b"HTTP/1.1 200 OK\r\nCni-Exit: 0\r\nContent-Length: 9\r\n\r\n{}", "9"),
        (b"HTTP/1.1 200 OK\r\nCni-Exit: 0", "incomplete answer"),
        (b"", "did the service restart?"),
    ],
)
def test_a_malformed_answer_is_named(exe: Path, tmp_path: Path, answer: bytes, why: str) -> None:
    svc = CannedService(tmp_path / "s.sock", answer)
    try:
        status, out, _ = call(exe, {**ENV, "SPIDERNET_SOCKET": str(svc.path)}, b"{}")
    finally:
        svc.close()
    assert status == 1
    obj = json.loads(out)
    assert obj["code"] == 11
    assert "malformed answer" in obj["msg"]
    assert why in obj["msg"]


def test_a_line_break_in_a_variable_is_refused_before_sending(
    exe: Path, service: CannedService
) -> None:
    env = {**ENV, "CNI_ARGS": "A=1\r\nX-Evil: 1", "SPIDERNET_SOCKET": str(service.path)}
    status, out, _ = call(exe, env, b"{}")
    assert status == 1
    assert json.loads(out)["code"] == 4
    assert "CNI_ARGS" in json.loads(out)["msg"]
    assert service.requests == []


@pytest.mark.parametrize("where", ["ipam", "top"])
@pytest.mark.parametrize("escaped", [False, True])
def test_the_config_names_the_socket(
    exe: Path, service: CannedService, escaped: bool, where: str
) -> None:
    # Under `ipam` in a main plugin's config (spidernet-ipam's), at the top in the
    # coordinator's and the ifacer's.
    key = {"ipam_unix_socket_path": str(service.path)}
    conf = json.dumps({"ipam": key} if where == "ipam" else {"type": "x", **key})
    if escaped:  # JSON may escape "/" as "\/"; both forwarders undo it
        conf = conf.replace("/", "\\/")
    status, out, _ = call(exe, {**ENV, "SPIDERNET_SOCKET": "/nonexistent.sock"}, conf.encode())
    assert (status, out) == (0, ANSWER)


@pytest.mark.parametrize(
    ("conf", "path"),
    [
        (b'{"ipam": {"ipam_unix_socket_path": "/a/b.sock"}}', "/a/b.sock"),
        (b'{"ipam": {"ipam_unix_socket_path"\n :\n "/with space"}}', "/with space"),
        (b'{"ipam": {"ipam_unix_socket_path": "/a\\\\b"}}', "/a\\b"),  # escaped: via json
        (b'{"ipam": {"ipam_unix_socket_path": 5}}', ""),
        (b'{"ipam_unix_socket_path": [1], "ipam": {}}', ""),
        (b'{"type": "x", "ipam_unix_socket_path": "/top.sock"}', "/top.sock"),
        (b'{"type": "x", "ipam_unix_socket_path": "/t\\\\op"}', "/t\\op"),  # via json
        (
            b'{"ipam_unix_socket_path": "/t\\\\op", "ipam": {"ipam_unix_socket_path": "/i"}}',
            "/t\\op",
        ),
        (b'{"ipam_unix_socket_path": 5, "ipam": {"ipam_unix_socket_path": "/i\\\\x"}}', "/i\\x"),
        (b"{not json", ""),
    ],
)
def test_the_config_socket_is_read_without_json(conf: bytes, path: str) -> None:
    assert forward._config_socket(conf) == path


def test_socket_path_precedence() -> None:
    conf = json.dumps({"ipam": {"ipam_unix_socket_path": "/from/conf.sock"}}).encode()
    assert forward.socket_path(conf, {"SPIDERNET_SOCKET": "/from/env"}) == "/from/conf.sock"
    assert forward.socket_path(b"{}", {"SPIDERNET_SOCKET": "/from/env"}) == "/from/env"
    assert forward.socket_path(b"{}", {}) == forward.DEFAULT_SOCKET


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 200 OK\r\nCni-Exit: 0\r\nContent-Length: 5\r\n\r\nab", b"no header end"],
)
def test_parse_response_rejects_truncated_answers(answer: bytes) -> None:
    with pytest.raises(ValueError, match=r"answer|incomplete"):
        forward.parse_response(answer)


@pytest.mark.parametrize("python", [sys.executable, "/opt/other/python3"])
def test_the_installed_executable_imports_only_builtins(
    tmp_path: Path, service: CannedService, python: str
) -> None:
    # Compiled for this interpreter, or plain source for another one; both run here.
    script = tmp_path / "spidernet-ipam"
    script.write_text(render("spidernet-ipam", python))
    script.chmod(0o755)
    conf = json.dumps({"cniVersion": "1.0.0", "ipam": {"ipam_unix_socket_path": str(service.path)}})
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-I", "-S", str(script)],
        input=conf.encode(),
        env=ENV,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == ANSWER
    imported = {
        line.split("|")[-1].strip() for line in res.stderr.decode().splitlines() if "|" in line
    }
    assert "_socket" in imported
    # No stdlib `socket`, `json` or anything of ours: only what -I -S starts with and _socket.
    assert not imported & {"socket", "json", "spidernet", "encodings.idna", "selectors"}


@pytest.fixture(params=["compiled", "python"])
def exe_with_fallback(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A forwarder whose no-service fallback is `python -I -m json.tool` (it echoes stdin
    back, pretty-printed: proof that the fallback got the call's stdin)."""
    path = tmp_path / "spidernet-coordinator"
    if request.param == "compiled":
        compile_forwarder("spidernet-coordinator", path, fallback=(sys.executable, "json.tool"))
    else:
        text = render("spidernet-coordinator", "/opt/other/python3")
        text = text.replace("#!/opt/other/python3", f"#!{sys.executable}", 1)
        text = text.replace(
            "['/opt/other/python3', '-I', '-m', 'spidernet.node.coordinator']",
            repr([sys.executable, "-I", "-m", "json.tool"]),
        )
        path.write_text(text)
    path.chmod(0o755)
    return path


def test_without_a_service_the_fallback_runs_with_the_same_stdin(
    exe_with_fallback: Path, tmp_path: Path
) -> None:
    env = {**ENV, "SPIDERNET_SOCKET": str(tmp_path / "none.sock")}
    status, out, _ = call(exe_with_fallback, env, b'{"a": [1, 2]}')
    assert status == 0
    assert json.loads(out) == {"a": [1, 2]}
    assert out.startswith(b"{\n    ")  # json.tool's layout: the fallback ran


def test_with_a_service_the_fallback_does_not_run(
    exe_with_fallback: Path, service: CannedService
) -> None:
    env = {**ENV, "SPIDERNET_SOCKET": str(service.path)}
    assert call(exe_with_fallback, env, b"{}") == (0, ANSWER, "")
