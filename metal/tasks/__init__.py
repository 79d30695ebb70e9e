"""tasks (in progress)."""
