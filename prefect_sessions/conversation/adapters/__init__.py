"""One adapter per provider, implementing :mod:`prefect_sessions.conversation.protocol`."""
