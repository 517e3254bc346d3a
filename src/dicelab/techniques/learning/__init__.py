"""Learning techniques (one module each)."""
