"""The RTL area's exception."""

__all__ = ["RTLError"]


class RTLError(Exception):
    """A cascade, binding or array the RTL generators cannot build; the message names the Einsum,
    operator or parameter and what to do about it."""
