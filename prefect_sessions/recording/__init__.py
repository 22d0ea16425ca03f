"""Suites from real conversations: ``record`` (a provider's past conversations), ``crawl``
(an agent's choices, explored), and ``run --update-expectations`` (expectations from a run)."""
