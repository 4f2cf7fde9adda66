"""deploy/chart is the one source of spidernet's Kubernetes objects; the plain manifests that
`kubectl apply -k deploy/` takes (deploy/manifests/, deploy/monitoring/) are rendered from it.

`render` runs a real `helm template` (helm built by gotools.ensure_helm) on the chart with
values; `kustomize_files` splits what the KUSTOMIZE values render into the files of deploy/,
one per template, each under a header that says so. `python -m spidernet.testbed.chart
manifests` rewrites them (`make manifests`); `--check` only compares, and the k8s lane
(tests/k8s/test_chart.py) fails when a change to the chart was not rendered into them.

    python -m spidernet.testbed.chart manifests [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "chart"
RELEASE = "spidernet"
NAMESPACE = "kube-system"


def version() -> str:
    """The package's version (pyproject.toml): the chart's, the image's tag."""
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def kustomize_values() -> dict[str, Any]:
    """What deploy/'s manifests are rendered with: the image named `spidernet` (the
    kustomization's `images:` sets it), no release objects (a kustomize user makes their own
    pools and coordinator), and the Prometheus Operator objects and dashboard (they go to
    deploy/monitoring/, applied on their own)."""
    return {
        "image": {"repository": "spidernet", "tag": version()},
        "coordinator": {"create": False},
        "monitoring": {"serviceMonitor": True, "podMonitor": True, "dashboard": True},
    }


# Which file of deploy/ each template renders into (the rest go to manifests/<same name>).
ROUTES = {
    "monitoring.yaml": "monitoring/monitoring.yaml",
    "defaults.yaml": None,  # nothing with the kustomize values
    "multus.yaml": None,
}
HEADER = (
    "# Rendered from deploy/chart/templates/{template} by `make manifests` (helm template);\n"
    "# edit the chart, not this file.\n"
)
_SOURCE = re.compile(r"^# Source: [^/]+/templates/(\S+)\n", re.MULTILINE)


def helm_env(kubeconfig: Path | None = None) -> dict[str, str]:
    """helm's environment: no user config or cache of this machine's, only the kubeconfig."""
    import os
    import tempfile

    home = Path(tempfile.gettempdir()) / "spidernet-helm"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
    env.update(
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_DATA_HOME=str(home / "data"),
    )
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return env


def helm(
    binary: Path,
    args: Sequence[str],
    *,
    values: Mapping[str, Any] | None = None,
    kubeconfig: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `helm ARGS` (values, if any, passed as a file on stdin: `-f -`); the completed
    process, whatever its exit."""
    argv = [str(binary), *args]
    stdin = None
    if values is not None:
        argv += ["-f", "-"]
        stdin = json.dumps(values)  # JSON is YAML
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=helm_env(kubeconfig),
    )


def render(binary: Path, values: Mapping[str, Any]) -> str:
    """`helm template` of the chart as release `spidernet` in kube-system; raises
    RuntimeError with helm's message when it refuses."""
    done = helm(binary, ["template", RELEASE, str(CHART), "-n", NAMESPACE], values=values)
    if done.returncode != 0:
        raise RuntimeError(f"helm template failed: {done.stderr.strip()}")
    return done.stdout


def split_by_template(rendered: str) -> dict[str, list[str]]:
    """Template file -> the documents it rendered, in order (helm marks each document with
    `# Source: <chart>/templates/<file>`)."""
    out: dict[str, list[str]] = {}
    for chunk in re.split(r"^---\s*$", rendered, flags=re.MULTILINE):
        found = _SOURCE.search(chunk)
        if found is None:
            continue
        body = chunk[found.end() :].strip("\n")
        if body.strip():
            out.setdefault(found.group(1), []).append(body)
    return out


def kustomize_files(rendered: str) -> dict[str, str]:
    """deploy/-relative path -> text of each rendered manifest file."""
    files: dict[str, str] = {}
    for template, docs in split_by_template(rendered).items():
        target = ROUTES.get(template, f"manifests/{template}")
        if target is None:
            raise ValueError(f"{template} rendered objects with the kustomize values")
        files[target] = HEADER.format(template=template) + "\n---\n".join(docs) + "\n"
    return files


def stale(files: Mapping[str, str]) -> list[str]:
    """The deploy/ files that differ from `files`, and rendered files that no template
    renders any more."""
    out = [
        p
        for p, text in files.items()
        if not (DEPLOY / p).is_file() or (DEPLOY / p).read_text() != text
    ]
    for folder in ("manifests", "monitoring"):
        for path in sorted((DEPLOY / folder).glob("*.yaml")):
            rel = f"{folder}/{path.name}"
            if rel not in files and path.read_text().startswith("# Rendered from deploy/chart"):
                out.append(rel)
    return sorted(out)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m spidernet.testbed.chart")
    parser.add_argument("what", choices=["manifests"], help="render deploy/'s manifests")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    args = parser.parse_args(argv)
    from spidernet.testbed.gotools import ensure_helm

    files = kustomize_files(render(ensure_helm(), kustomize_values()))
    differ = stale(files)
    if args.check:
        for path in differ:
            print(f"deploy/{path} is not what deploy/chart renders", file=sys.stderr)
        return 1 if differ else 0
    for path in differ:
        target = DEPLOY / path
        if path in files:
            target.write_text(files[path])
        else:
            target.unlink()
        print(f"wrote deploy/{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
