"""Serving: one scoring path (the evaluator's) for batch inference and online requests."""
