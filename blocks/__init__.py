"""Block set-up for deployments: ``python -m blocks`` (see README.md in this folder)."""
