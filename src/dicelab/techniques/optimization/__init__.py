"""Optimization techniques (one module each)."""
