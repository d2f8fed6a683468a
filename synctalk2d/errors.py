"""Errors a user can fix: the CLI prints these as one line, without a traceback."""


class UserError(Exception):
    """Bad input or an unmet precondition, described in one sentence the user can act on."""
