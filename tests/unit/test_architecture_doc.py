"""docs/architecture.md names only what is in the repository: every path in its diagram and
tables exists, and every Mermaid node is drawn from a path that does."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
# A repository path: a top-level folder of ours, then path characters.
PATH = re.compile(
    r"\b((?<![\w/])(?:node|control|cni|netconf|deploy|testbed|tests|bpf|docs|bench)/[\w./-]*|cli\.py|pyproject\.toml)"
)


def named_paths(text: str) -> set[str]:
    return {m.rstrip("./") for m in PATH.findall(text)}


def test_every_path_the_doc_names_exists() -> None:
    text = DOC.read_text()
    paths = named_paths(text)
    assert len(paths) >= 30
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md names what is not there: {missing}"


def test_the_check_can_fail() -> None:
    assert named_paths("see node/nothing/here.py and cli.py") == {"node/nothing/here.py", "cli.py"}
    assert not (ROOT / "node/nothing/here.py").exists()


def test_the_diagram_is_mermaid_source_with_every_box_tied_to_code() -> None:
    (diagram,) = re.findall(r"```mermaid\n(.*?)```", DOC.read_text(), re.S)
    assert diagram.startswith("flowchart")
    nodes = [line for line in diagram.splitlines() if not line.strip().startswith("subgraph")]
    boxes = re.findall(r'\w+\["([^"]+)"\]', "\n".join(nodes))
    assert len(boxes) >= 12
    # Every box but the runtime's NAD names the code that is it.
    untied = [b for b in boxes if not named_paths(b)]
    assert untied == ["NetworkAttachmentDefinition / .conflist"]
