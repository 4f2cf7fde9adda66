"""The root of the control side's exceptions: every error spidernet.control raises on purpose
is a ControlError (the store's, the allocator's, the model's, the controller's, the client's),
so a caller can tell them from a bug with one `except`."""

from __future__ import annotations


class ControlError(Exception):
    """An error of the control side: resources, allocation, stores, the controller."""
