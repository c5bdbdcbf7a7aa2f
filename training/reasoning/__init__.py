"""Stage 1a: a teacher writes structured reasoning about behaviour pairs (schema, prompts, backends, run)."""
