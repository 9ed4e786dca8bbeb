"""User-facing errors: one line, no traceback, non-zero exit (the CLI turns them into ClickExceptions)."""


class AgdError(Exception):
    """Bad data or an impossible request (exit 1). The message is shown as one line."""

    exit_code = 1


class MissingRuntimeError(AgdError):
    """A target's runtime package (or device) is not available here."""


class ArchError(AgdError, ValueError):
    """An arch that does not fit its space (bad JSON, wrong space, unknown op or width)."""


class ConfigError(AgdError):
    """A user's YAML file (recipe, export profile) that does not match its schema: an unknown key or a value
    of the wrong type (`agd_deploy.config`). A usage error: exit 2, like a bad command-line flag."""

    exit_code = 2


class AgdUsageError(AgdError):
    """A request the command line cannot satisfy as given (a missing --input for a dynamic ONNX shape, a format
    that needs a torch model): one line, exit 2 like click's usage errors, raised from library code."""

    exit_code = 2
