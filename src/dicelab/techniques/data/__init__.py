"""Data techniques (one module each)."""
