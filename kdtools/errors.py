"""The project's one error type for problems a user can fix.

The CLI turns a KdError into a single red line and exit code 2, always before any expensive
work (model loading, training) starts, so that nothing already written is touched.
"""


class KdError(Exception):
    """A user-facing problem. The message names the problem and the fix, on one line."""
