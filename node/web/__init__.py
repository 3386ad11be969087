"""The staff web UI (server-rendered, Vietnamese, no external assets)."""
