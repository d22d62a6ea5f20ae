"""Train tasks of the app."""
