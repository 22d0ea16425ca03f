"""Suites and their conversations, provider-neutral: a suite file and its datasets, the runner
that takes a conversation's turns through a provider's adapter and checks the answers, and the
results file a run resumes from. Batch runs on Prefect build on it (:mod:`prefect_sessions.batch`).
"""
