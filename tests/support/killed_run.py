"""Start ``prefect-sessions run --progress lines`` in a subprocess and kill it mid-run."""

from __future__ import annotations

import signal
import subprocess


def kill_after_verdicts(command: list[str], env: dict[str, str], count: int) -> list[str]:
    """Run ``command`` until ``count`` conversations reached a verdict, then SIGKILL it.

    Waits on the run's own output (one line per finished conversation), not on a clock. Returns
    the ids of the conversations that passed or failed before the kill.
    """
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    finished: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        status, conversation = line.split()
        if status in ("passed", "failed"):
            finished.append(conversation)
        if len(finished) == count:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return finished
