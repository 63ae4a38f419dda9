"""The fault harness: the whole system (PostgreSQL, simulator, API, workers) under faults.

``tests/chaos/harness.py`` runs it; ``test_chaos_short.py`` is the short version collected by
``make test``; ``python -m tests.chaos`` (``make chaos``) is the full one.
"""
