"""Reliability tests: hostile inputs, concurrency, faults, and nothing lost (issue 6)."""
