"""Mover fixtures live in mover_kit.py (importable by the tests too); pytest loads them here."""

from mover_kit import s3_config, s3_server  # noqa: F401
