"""Errors a user can act on: the CLI prints their message as one line, the notebooks show it as is."""


class UserError(Exception):
    """Bad input or a missing prerequisite; the message says what to do."""


class ServiceUnavailable(UserError):
    """A platform service does not answer."""
