"""labeling (in progress)."""
