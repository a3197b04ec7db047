"""The store: SQLAlchemy 2 models and data access (session passed in, never created here)."""
