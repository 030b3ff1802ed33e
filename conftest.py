# Root conftest: makes the project importable for tests in every app's tests/ folder.
pytest_plugins = ["tests.fixtures"]
