"""The one base class for mistakes a user can fix (a missing file, an unreadable model, a bad option).

Every module's own error (ImageError, ModelLoadError, DataError, ...) derives from it, so the
command lines report all of them the same way without knowing each one: one `error: ...`
line on stderr, exit code 2, no traceback (`stylenet.commands.app`). Imports nothing.
"""


class UserError(Exception):
    """Input the user can correct; the message says what is wrong and how to fix it."""
