"""The analysis engines behind ``armvww bench``, ``parity`` and ``eval``: functions and
dataclasses a library user can call; no argument parsing (that is :mod:`armvww.cli`)."""
