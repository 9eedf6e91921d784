"""Metrics for generation tasks (and, alongside, the GPT-score judge)."""
