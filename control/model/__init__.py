"""Spiderpool's resources (`spiderpool.spidernet.io/v2beta1`) as validated records.

- `iprange`: `IntervalSet`, address sets as intervals (never enumerated).
- `resources`: the records (`IPPool`, `Subnet`, `ReservedIP`, `Coordinator`, `Endpoint`).
- `documents`: YAML/JSON in (`load_documents`, `parse`) and out (`to_document`).
- `rules` / `validate`: rules on one resource / between resources.
- `errors`: `ValidationError` naming kind, name, field and reason.
- `printing`: `kubectl get` columns and CLI kind names.

Pure code: no I/O, clocks or sockets. Import the submodules directly.
"""

from __future__ import annotations
