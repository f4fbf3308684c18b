"""The root of genpipe's user-facing errors: stages print these without a traceback."""


class GenpipeError(Exception):
    """An error a user can act on; its message names the file, key or URI and says what to do."""
