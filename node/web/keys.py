"""Typed application keys shared by the web and API handlers."""

from __future__ import annotations

from aiohttp import web

from node.auth import Principal, Session
from node.config import NodeConfig
from node.provision import Node

__all__ = ["CONFIG", "LOGIN_NAME", "NODE", "PRINCIPAL", "SESSION"]

NODE = web.AppKey("node", Node)
CONFIG = web.AppKey("config", NodeConfig)
SESSION = web.RequestKey("session", Session)
"""The request's live staff session (absent: none)."""
PRINCIPAL = web.RequestKey("principal", Principal)
"""Who acts: the session's user or the API token."""
LOGIN_NAME = web.RequestKey("login_name", str)
"""The username typed into a failed login form (to fill it again)."""
