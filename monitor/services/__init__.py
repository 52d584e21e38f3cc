"""Use cases. Each takes a Session and plain values, and owns its transaction."""
