"""The plugin skel: one dispatcher for every spidernet plugin (CNI spec, "Section 3").

`plugin_main` reads the CNI_* environment and the stdin config, checks the version rules of
each verb, calls the plugin and prints its result, or the spec's error object, on stdout
(where libcni looks for it first), exiting 1 on error. Any exception that is not a CNIError
becomes code 999 with a one-line message: a plugin never prints a Python traceback.
The streams and environment are injectable so tests call a plugin in-process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from . import version as cni_version
from .config import PluginConf, config_version, decode_json, plugin_conf_from
from .env import CniEnv, parse_env, validate_name
from .errors import CNIError, Code, Deferred
from .result import Result, to_dict


@dataclass(frozen=True)
class CallArgs:
    """Everything one call carries: the environment, the parsed config and the raw stdin."""

    env: CniEnv
    conf: PluginConf
    stdin: bytes


@dataclass(frozen=True)
class Plugin:
    """A plugin's verbs. ADD returns its result; the others raise CNIError on failure."""

    name: str
    add: Callable[[CallArgs], Result]
    delete: Callable[[CallArgs], None]
    check: Callable[[CallArgs], None]
    status: Callable[[CallArgs], None]
    gc: Callable[[CallArgs], None]
    about: str = ""


# Verbs that need a minimum config version (CHECK arrived in 0.4.0, GC and STATUS in 1.1.0).
_MIN_VERSION = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def _dispatch(plugin: Plugin, env: CniEnv, data: bytes, stdout: TextIO) -> None:
    obj = decode_json(data)
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise CNIError(Code.INVALID_NETWORK_CONFIG, "missing network name")
    validate_name("network name", name, Code.INVALID_NETWORK_CONFIG)
    version = config_version(obj)
    minimum = _MIN_VERSION.get(env.command)
    if minimum and not cni_version.at_least(version, minimum):
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"config version does not allow {env.command}",
            f"config is '{version}', {env.command} needs {minimum} or later",
        )
    cni_version.check_supported(version)
    args = CallArgs(env=env, conf=plugin_conf_from(obj), stdin=data)
    if env.command == "ADD":
        result = plugin.add(args)
        stdout.write(json.dumps(to_dict(result, version), indent=4) + "\n")
    elif env.command == "DEL":
        plugin.delete(args)
    elif env.command == "CHECK":
        plugin.check(args)
    elif env.command == "STATUS":
        plugin.status(args)
    else:
        plugin.gc(args)


def error_version(data: bytes) -> str:
    """The version to label an error with: the config's, when we speak it."""
    try:
        obj = json.loads(data)
        version = obj.get("cniVersion", "") if isinstance(obj, dict) else ""
    except (ValueError, UnicodeDecodeError):
        return cni_version.CURRENT
    return version if version in cni_version.SUPPORTED else cni_version.CURRENT


def plugin_main(
    plugin: Plugin,
    *,
    environ: Mapping[str, str],
    stdin: BinaryIO,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """Serve one CNI call; returns the process exit status (0 or 1)."""
    if not environ.get("CNI_COMMAND") and plugin.about:
        # Run by hand: say what this is, as the reference plugins do.
        stderr.write(f"{plugin.about}\n")
        stderr.write(f"CNI protocol versions supported: {', '.join(cni_version.SUPPORTED)}\n")
        return 0
    data = b""
    try:
        env = parse_env(environ)
        if env.command == "VERSION":
            stdout.write(cni_version.version_info_json())
            return 0
        try:
            data = stdin.read()
        except OSError as e:
            raise CNIError(Code.IO_FAILURE, f"failed to read stdin: {e}") from e
        _dispatch(plugin, env, data, stdout)
    except Deferred:
        raise  # the node service calls again later (errors.Deferred)
    except CNIError as e:
        stdout.write(e.to_json(error_version(data)))
        stderr.write(f"{plugin.name}: {e.msg}{': ' + e.details if e.details else ''}\n")
        return 1
    except Exception as e:  # the spec's catch-all: code 999, never a traceback
        err = CNIError(Code.INTERNAL, f"{plugin.name}: internal error: {type(e).__name__}: {e}")
        stdout.write(err.to_json(error_version(data)))
        stderr.write(f"{err.msg}\n")
        return 1
    return 0


def run(plugin: Plugin) -> None:
    """Entry point for a plugin process: real streams and environment, then exit."""
    import os

    status = plugin_main(
        plugin, environ=os.environ, stdin=sys.stdin.buffer, stdout=sys.stdout, stderr=sys.stderr
    )
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        status = 1
    sys.exit(status)
