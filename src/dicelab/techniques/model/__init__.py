"""Model techniques (one module each)."""
