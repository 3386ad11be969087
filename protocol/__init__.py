"""motcua protocol v1: the shared language of nodes and the hub (pure: stdlib + cryptography)."""

from protocol.errors import *  # noqa: F403
