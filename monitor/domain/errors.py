"""Errors a user can fix. Entry points print them as one line and exit 2; bugs raise."""


class UserError(Exception):
    """Something the user can fix: the message says what, where and how."""


class ProtocolError(UserError):
    """A protocol, analyte or grading file is invalid. The message names the file and key."""


class NotFound(UserError):
    """A patient, flag or other record named by the user does not exist."""
