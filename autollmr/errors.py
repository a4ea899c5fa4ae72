"""The one exception type for a user's mistake (a bad spec, flag value or table name).

Library code raises it with a message naming the file, column, line, spec key or flag; every
command turns it into one `error: ...` line and exit status 2 (cli.py), never a traceback.
"""


class UserError(ValueError):
  """A mistake in what the user gave; the message says where and what to do instead."""
