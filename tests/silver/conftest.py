"""The bronze row builders and writer of the identity tests serve here too."""

from tests.identity.conftest import write_bronze  # noqa: F401
