"""Frappe's exception classes, with the HTTP status each one answers (as in frappe.exceptions).

Database errors are not Frappe exceptions: they come from the database driver and answer 500.
"""


class ValidationError(Exception):
    http_status_code = 417


class AuthenticationError(Exception):
    http_status_code = 401


class PermissionError(Exception):  # noqa: A001 (Frappe's name)
    http_status_code = 403


class DoesNotExistError(ValidationError):
    http_status_code = 404


class NameError(Exception):  # noqa: A001 (Frappe's name)
    http_status_code = 409


class DuplicateEntryError(NameError):
    """A second document with the same name."""


class MandatoryError(ValidationError):
    pass


class LinkValidationError(ValidationError):
    pass


class UniqueValidationError(ValidationError):
    """A second row with the same value in a unique field."""


class CharacterLengthExceededError(ValidationError):
    pass


class TimestampMismatchError(ValidationError):
    pass


class CSRFTokenError(Exception):
    http_status_code = 400


class OperationalError(Exception):
    """What the database driver raises for a bad statement: an unknown column (1054), an invalid
    datetime (1292) or JSON value (4025). Not a Frappe exception: the request answers 500."""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
