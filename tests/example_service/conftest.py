"""An example service's test suite using the infra_lib pytest plugin.

Run by tests/integration/test_pytest_plugin.py with ``pytest -n 2``; the
files are named ``check_*.py`` so the main suite does not collect them.
"""
