"""User-facing errors: one line, no traceback, non-zero exit (the CLI turns them into ClickExceptions)."""


class AgdError(Exception):
    """Bad data or an impossible request (exit 1). The message is shown as one line."""

    exit_code = 1


class MissingRuntimeError(AgdError):
    """A target's runtime package (or device) is not available here."""


class ArchError(AgdError, ValueError):
    """An arch that does not fit its space (bad JSON, wrong space, unknown op or width)."""
