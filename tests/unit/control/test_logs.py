"""The service's log formats (control/logs.py): text and one JSON object a line,
each carrying a record's fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from spidernet.control import logs


@pytest.fixture
def restore_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def emit(fmt: str, level: str = "info") -> list[str]:
    out = io.StringIO()
    logs.configure(level, fmt, out)
    log = logging.getLogger("spidernet.cni")
    fields = {"plugin": "spidernet-ipam", "pod": "default/web 0", "ms": 3.2}
    log.info("cni ADD spidernet-ipam: ok", extra={"fields": fields})
    log.debug("not shown at info")
    return out.getvalue().splitlines()


def test_text_lines_carry_the_fields_as_key_value(restore_root: logging.Logger) -> None:
    line = "spidernet: INFO: cni ADD spidernet-ipam: ok"
    assert emit("text") == [f'{line} plugin=spidernet-ipam pod="default/web 0" ms=3.2']


def test_json_lines_are_one_object_each_with_the_fields(restore_root: logging.Logger) -> None:
    (line,) = emit("json")
    doc = json.loads(line)
    assert doc["level"] == "info"
    assert doc["logger"] == "spidernet.cni"
    assert doc["msg"] == "cni ADD spidernet-ipam: ok"
    assert (doc["plugin"], doc["pod"], doc["ms"]) == ("spidernet-ipam", "default/web 0", 3.2)
    assert doc["time"].endswith("Z")


def test_the_level_filters_and_bad_settings_are_refused(restore_root: logging.Logger) -> None:
    assert emit("text", "warning") == []
    with pytest.raises(ValueError, match="log level must be one of"):
        logs.configure("loud", "text")
