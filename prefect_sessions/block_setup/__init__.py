"""Register the package's block types with a Prefect server and create or update credentials
blocks from environment variables or a YAML file.

Run it as ``prefect-sessions blocks`` (or, from the repository, ``python -m blocks``; see
``blocks/README.md``). Everything is checked before anything is saved: a missing environment
variable, an unknown block type or field, a secret written into the file or bad YAML stops the
command with a message naming the field and the fix, and nothing reaches the server. Secrets are
read from environment variables only and never printed; the output names the variable instead.
"""

from prefect_sessions.block_setup.apply import apply, register_block_types
from prefect_sessions.block_setup.command import main
from prefect_sessions.block_setup.plan import (
    DEFAULT_BLOCK_NAME,
    BlockSetupError,
    PlannedBlock,
    block_types,
    env_prefix,
    plan_from_env,
    plan_from_yaml,
    secret_fields,
)

__all__ = [
    "DEFAULT_BLOCK_NAME",
    "BlockSetupError",
    "PlannedBlock",
    "apply",
    "block_types",
    "env_prefix",
    "main",
    "plan_from_env",
    "plan_from_yaml",
    "register_block_types",
    "secret_fields",
]
