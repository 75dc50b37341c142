"""Fixtures shared by several test modules.

`import mld` comes first: it pins the CPU kernels (mld.numerics) before any test imports torch, so
a run in the test process computes as the `python -m mld` processes the tests start.
"""
import mld  # noqa: F401
from toy_paper import toy_paper  # noqa: F401  (the paper config at toy scale, session-scoped)
