"""The public names of :mod:`prefect_sessions.llm`."""

from prefect_sessions.llm.client import ChatAnswer, ModelClient
from prefect_sessions.llm.connection import ModelConnection
from prefect_sessions.llm.credentials import ModelCredentials

__all__ = ["ChatAnswer", "ModelClient", "ModelConnection", "ModelCredentials"]
