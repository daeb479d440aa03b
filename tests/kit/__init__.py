"""The test kit: helpers every layer imports as `tests.kit.<module>` (fixtures stay in conftest
files). See tests/README.md for which module holds what."""
