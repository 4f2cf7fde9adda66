"""Plugins whose data path has not landed yet still speak CNI correctly.

ADD and CHECK answer NOT_IMPLEMENTED (100, a plugin-specific code), STATUS answers
PLUGIN_NOT_AVAILABLE (50) so a runtime knows not to schedule onto it, and DEL and GC succeed:
such a plugin never created anything, and DEL must succeed when there is nothing to remove.
"""

from __future__ import annotations

from .errors import CNIError, Code
from .result import Result
from .skel import CallArgs, Plugin


def pending_plugin(name: str, what: str) -> Plugin:
    """A Plugin for `name` whose ADD explains that `what` is not available yet."""

    msg = f"{what} is not implemented yet in {name}"

    def refuse(_: CallArgs) -> Result:
        raise CNIError(Code.NOT_IMPLEMENTED, msg)

    def refuse_check(_: CallArgs) -> None:
        raise CNIError(Code.NOT_IMPLEMENTED, msg)

    def unavailable(_: CallArgs) -> None:
        raise CNIError(Code.PLUGIN_NOT_AVAILABLE, msg)

    def nothing_to_do(_: CallArgs) -> None:
        return None

    return Plugin(
        name=name,
        add=refuse,
        delete=nothing_to_do,
        check=refuse_check,
        status=unavailable,
        gc=nothing_to_do,
        about=f"{name}: spidernet CNI plugin ({what} not implemented yet)",
    )
