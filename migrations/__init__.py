"""Alembic migrations of the store. The schema changes only through these."""
