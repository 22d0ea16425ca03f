"""The provider seam: what a provider package implements and how it plugs in.

- :mod:`.turns`: the suite's turns and expectations, and the provider-neutral :class:`Reply`;
- :mod:`.adapter`: the adapter protocol the runner drives, its client-backed base class, and how a
  run's credentials are chosen;
- :mod:`.provider`: the registry entry, :class:`Provider`.

It sits below the provider packages and above the engine (:mod:`prefect_sessions.http`): providers
import it, it imports none of them.

Its names live in :mod:`.api` and are imported on first use: the suite validator reads
:mod:`.provider` and :mod:`.turns` without loading Prefect (which :mod:`.adapter` needs).
"""

from typing import TYPE_CHECKING

from prefect_sessions._lazy import lazy_exports

if TYPE_CHECKING:
    from prefect_sessions.seam.api import *  # noqa: F403
else:
    __getattr__, __dir__ = lazy_exports(__name__, "prefect_sessions.seam.api")
