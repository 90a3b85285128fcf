"""Plain helpers shared by the tests, imported as ``from helpers.<module> import ...``
(``tests/`` is on ``sys.path`` through ``pythonpath`` in pyproject.toml). Fixtures are not
here: they live in tests/conftest.py, where pytest finds them."""
