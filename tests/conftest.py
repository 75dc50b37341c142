"""Fixtures shared by several test modules."""
from toy_paper import toy_paper  # noqa: F401  (the paper config at toy scale, session-scoped)
