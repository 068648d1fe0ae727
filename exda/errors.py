"""The one exception type for mistakes a user can make (bad path, unknown key, wrong checkpoint)."""


class UserError(Exception):
    """Raised for errors caused by user input; the CLI prints its message on one line and exits 2."""
