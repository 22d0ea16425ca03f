"""Suites on Prefect: a batch run, its chunk tasks and shards, and its summary and report.

- :mod:`.run`: one run of a suite inside a flow run, its summary and artifacts;
- :mod:`.chunks`: conversations cut into chunk tasks, paced by one client per chunk;
- :mod:`.shards`: a suite cut into shares across a work pool's workers, merged into one report;
- :mod:`.report`: the summary, the markdown report, JSON and JUnit files.
"""
