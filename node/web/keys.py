"""Typed application keys shared by the web and API handlers."""

from __future__ import annotations

from aiohttp import web

from node.config import NodeConfig
from node.provision import Node

__all__ = ["CONFIG", "NODE"]

NODE = web.AppKey("node", Node)
CONFIG = web.AppKey("config", NodeConfig)
