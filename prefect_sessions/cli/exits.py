"""The command's exit statuses (the package docstring says when each is used)."""

EXIT_PASSED, EXIT_FAILED, EXIT_INVALID, EXIT_STOPPED = 0, 1, 2, 3
