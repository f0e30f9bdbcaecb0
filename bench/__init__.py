"""Benchmarks and timing scripts (run by hand, never by the tests)."""
