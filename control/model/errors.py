"""Validation errors that name the resource, the field and the reason.

Spiderpool's webhooks answer with Kubernetes field errors (`field.Invalid(path, value, msg)`);
ours read the same way in one line:
`SpiderIPPool 'pool-a': spec.gateway: 10.0.0.1 lies inside spec.ips; add it to spec.excludeIPs`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from spidernet.control.errors import ControlError


class ValidationError(ControlError):
    """A resource was refused: `kind` and `name` say which, `field` where, `reason` why.

    `namespace` is set only for namespaced kinds (SpiderEndpoint). An error about the whole
    resource has `field` "" and reads as its reason alone, which names the resource itself
    ("cannot delete SpiderIPPool 'x' with 3 allocated IPs").
    """

    def __init__(self, kind: str, name: str, field: str, reason: str, namespace: str = "") -> None:
        super().__init__(kind, name, field, reason, namespace)
        self.kind = kind
        self.name = name
        self.field = field
        self.reason = reason
        self.namespace = namespace

    def __str__(self) -> str:
        if not self.field:
            return self.reason
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} '{where}': {self.field}: {self.reason}"


class ValidationErrors(ValidationError):
    """Several refusals of one resource, reported together.

    It is a ValidationError itself (with the first error's attributes), so callers that catch
    one error catch this too; `errors` holds every one, `str()` prints one per line.
    """

    def __init__(self, errors: Sequence[ValidationError]) -> None:
        if not errors:
            raise ValueError("ValidationErrors needs at least one error")
        first = errors[0]
        super().__init__(first.kind, first.name, first.field, first.reason, first.namespace)
        self.errors = tuple(errors)

    def __iter__(self) -> Iterator[ValidationError]:
        return iter(self.errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class Collector:
    """Gathers the errors of one resource, then raises them all at once.

    Checks that depend on an earlier field (the gateway needs the subnet) run only when that
    field was read; independent fields are all checked, so one answer lists every problem.
    """

    def __init__(self, kind: str, name: str, namespace: str = "") -> None:
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.errors: list[ValidationError] = []

    def add(self, field: str, reason: str) -> None:
        """Record one problem."""
        self.errors.append(ValidationError(self.kind, self.name, field, reason, self.namespace))

    def error(self, field: str, reason: str) -> ValidationError:
        """A single error of this resource, for raising at once."""
        return ValidationError(self.kind, self.name, field, reason, self.namespace)

    def extend(self, errors: Sequence[ValidationError]) -> None:
        """Record problems found elsewhere."""
        self.errors.extend(errors)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self) -> None:
        """Raise the one error, or a ValidationErrors for several; do nothing if none."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ValidationErrors(self.errors)
