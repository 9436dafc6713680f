"""The one base class of every error a user can act on.

A bad option, file, interface or privilege raises a subclass of SensorError
whose message is one line that says what is wrong and what to do; the command
line prints it and exits with status 2. Anything else escaping is a bug."""
from __future__ import annotations


class SensorError(Exception):
    """A condition the user must fix or know about; `str(e)` is the whole message."""
