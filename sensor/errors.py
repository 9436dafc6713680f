"""The one base class of every error a user can act on.

A bad option, file, interface or privilege raises a subclass of SensorError
whose message is one line that says what is wrong and what to do; the command
line prints it and exits with status 2. Anything else escaping is a bug."""
from __future__ import annotations


class SensorError(Exception):
    """A condition the user must fix or know about; `str(e)` is the whole message."""


class SessionsLost(SensorError):
    """A sink lost `sessions` it had already accepted (a batch whose commit failed): the
    output writer counts them all as failed, not just the session whose write raised."""

    def __init__(self, message: str, sessions: int) -> None:
        super().__init__(message)
        self.sessions = sessions
