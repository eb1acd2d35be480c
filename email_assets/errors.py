"""Errors a user can act on.

A `UserError` carries one line that names the fix; the CLI prints it without a traceback
and Dagster shows it as the failure reason. Anything else is a bug or a per-message defect.
"""


class UserError(Exception):
    """A mistake in input or configuration, explained in one actionable line."""


class ConfigurationError(UserError):
    """A missing or invalid environment setting."""


class AccountError(UserError):
    """An account that cannot be used: unknown name, failed login, unreachable host."""


class ServerProtocolError(AccountError):
    """A server whose answer breaks the IMAP protocol or our bounds (an ESEARCH naming more
    UIDs than the folder holds, say): one line naming the server and the folder."""
