"""The hub's configuration: one frozen dataclass, read once from ``<data>/central.toml`` and the environment.

Precedence: defaults < TOML file < environment (``MOTCUA_CENTRAL_<FIELD>`` in upper case). Unknown keys in
the file and unknown ``MOTCUA_CENTRAL_*`` variables are refused (with the closest known name), so a typo
never silently falls back to a default. Every field carries its help text (``help_text()``);
docs/configuration.md is generated from it and a test checks it.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_FILE", "CentralConfig", "ConfigError", "help_text", "load"]

CONFIG_FILE = "central.toml"
ENV_PREFIX = "MOTCUA_CENTRAL_"


class ConfigError(Exception):
    """The configuration file or environment holds an unknown key or an invalid value."""


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class CentralConfig:
    """Settings of one hub."""

    data_dir: Path = _f(Path("."), "State directory: hub key, SQLite database, blobs.")
    listen: str = _f("127.0.0.1:8470", "HOST:PORT to listen on (put TLS in front in production).")
    public_url: str = _f(
        "http://127.0.0.1:8470", "The URL nodes use to reach this hub (put in invite tokens)."
    )
    auth_window_s: int = _f(300, "Request timestamps further than this from hub time are refused as stale.")
    max_push_bytes: int = _f(8 * 1024 * 1024, "Largest push body in bytes (counted while streaming).")
    max_push_entries: int = _f(2000, "Most entries in one push batch.")
    push_rate_per_s: int = _f(20000, "Entries per second one node may push (token bucket, burst of 2 s).")
    invite_ttl_h: int = _f(72, "Hours an enrollment token stays valid.")
    lease_hours: int = _f(
        72,
        "Offline lease: hours a node may show personal data after its last sync (renewed at every "
        "heartbeat); per node: 'motcua-central node lease ID --hours N' or the node page.",
    )
    verify_threads: int = _f(2, "Threads checking Ed25519 signatures of pushed entries.")
    track_rate_per_min: int = _f(30, "Public tracking lookups allowed per client IP per minute.")
    skew_warn_s: int = _f(120, "Flag a node whose request clock differs from hub time by more than this.")
    heartbeat_keep: int = _f(2000, "Heartbeats kept per node (older ones are pruned).")
    online_window_s: int = _f(180, "A node is online when the hub heard from it within this many seconds.")
    lag_warn_s: int = _f(3600, "Warn when a node's oldest unacknowledged entry is older than this.")
    disk_warn_bytes: int = _f(2 * 1024**3, "Warn when a node reports less free disk than this.")
    session_idle_s: int = _f(1800, "A web session ends after this many seconds without a request.")
    session_max_s: int = _f(12 * 3600, "A web session ends this many seconds after login, whatever happens.")
    result_max_bytes: int = _f(20 * 1024 * 1024, "Largest result file an officer may upload.")
    rotation_threshold: int = _f(2, "Distinct hub admins who must approve a node key rotation.")
    rotation_approvers: str = _f(
        "", "Comma-separated web users who may approve node key rotations (empty: every admin)."
    )
    rotation_approval_ttl_s: int = _f(
        24 * 3600, "An approval of a node key rotation counts for this many seconds after it is given."
    )

    def validate(self) -> CentralConfig:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"listen must be HOST:PORT, got {self.listen!r}")
        if not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("public_url must be an http(s) URL")
        for name in (
            "auth_window_s",
            "max_push_bytes",
            "max_push_entries",
            "push_rate_per_s",
            "invite_ttl_h",
            "lease_hours",
            "verify_threads",
            "track_rate_per_min",
            "skew_warn_s",
            "heartbeat_keep",
            "online_window_s",
            "lag_warn_s",
            "disk_warn_bytes",
            "session_idle_s",
            "session_max_s",
            "result_max_bytes",
            "rotation_threshold",
            "rotation_approval_ttl_s",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.max_push_bytes < 70 * 1024:
            raise ConfigError("max_push_bytes must hold at least one 64 KiB entry")
        approvers = self.approvers
        if approvers and self.rotation_threshold > len(approvers):
            raise ConfigError(
                f"rotation_threshold {self.rotation_threshold} is more than the "
                f"{len(approvers)} rotation_approvers listed"
            )
        return self

    @property
    def approvers(self) -> tuple[str, ...]:
        """The web users allowed to approve node key rotations; empty means every admin."""
        names = (unicodedata.normalize("NFC", n).strip().lower() for n in self.rotation_approvers.split(","))
        return tuple(sorted({n for n in names if n}))

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hub.sqlite3"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "hub.key"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


def help_text() -> dict[str, str]:
    return {f.name: f.metadata["help"] for f in fields(CentralConfig)}


def _coerce(name: str, raw: Any, kind: Any, *, from_env: bool = False) -> Any:
    target = {"Path": Path, "str": str, "int": int}[kind if isinstance(kind, str) else kind.__name__]
    where = ENV_PREFIX + name.upper() if from_env else name
    if target is int:
        if isinstance(raw, bool) or not isinstance(raw, int | str) or (isinstance(raw, str) and not from_env):
            raise ConfigError(f"{where} must be an integer, got {raw!r}")
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{where} must be an integer, got {raw!r}") from None
    if not isinstance(raw, str | Path):
        raise ConfigError(f"{where} must be a string, got {raw!r}")
    return target(raw)


def _unknown(what: str, names: list[str], known: list[str]) -> ConfigError:
    hints = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    listed = "the settings are listed in docs/configuration.md"
    return ConfigError(f"{what}: unknown keys {', '.join(hints)}; {listed}")


def load(data_dir: Path, environ: Mapping[str, str] | None = None, **overrides: Any) -> CentralConfig:
    """Read ``<data_dir>/central.toml`` (if present) and the environment; keyword overrides win."""
    environ = os.environ if environ is None else environ
    known = {f.name: f for f in fields(CentralConfig)}
    settable = sorted(set(known) - {"data_dir"})
    values: dict[str, Any] = {}
    path = data_dir / CONFIG_FILE
    if path.exists():
        try:
            document = tomllib.loads(path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        unknown = sorted(set(document) - set(settable))
        if unknown:
            raise _unknown(str(path), unknown, settable)
        values.update({n: _coerce(n, v, known[n].type) for n, v in document.items()})
    variables = {ENV_PREFIX + n.upper() for n in settable}
    stray = sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in variables)
    if stray:
        raise _unknown("environment", stray, sorted(variables))
    for name in settable:
        env = environ.get(ENV_PREFIX + name.upper())
        if env is not None:
            values[name] = _coerce(name, env, known[name].type, from_env=True)
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["data_dir"] = data_dir
    config = CentralConfig(**{n: _coerce(n, v, known[n].type, from_env=True) for n, v in values.items()})
    assert all(f.default is not MISSING for f in fields(config))
    return replace(config).validate()
