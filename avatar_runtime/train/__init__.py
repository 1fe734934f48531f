"""Training pipelines for learned reconstructors (synthetic data, losses, trainer)."""
