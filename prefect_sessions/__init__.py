"""Prefect 3 integration for conversational-agent session APIs."""

from prefect_sessions._version import __version__

__all__ = ["__version__"]
