"""Mutation testing of the privacy-critical code (see ``python -m tests.mutation --help``)."""
