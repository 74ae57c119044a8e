"""The stemgen runner: the program each Job runs to generate, upload and report one request."""
