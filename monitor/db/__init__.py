"""Persistence: SQLModel tables, engine and migrations."""
