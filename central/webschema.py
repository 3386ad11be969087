"""Schema steps of the hub's web side (users, sessions, access log, the dossier index for lists).

Named migration steps appended after the hub core's (``central.schema.MIGRATIONS``); each is applied once
and recorded in ``schema_migrations``.
"""

from __future__ import annotations

__all__ = ["WEB_MIGRATIONS"]

_WEB = """
-- People who log in to the hub's web pages. ``phc`` is an Argon2id PHC string; never the password.
CREATE TABLE web_users (
    username    TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'officer', 'viewer')),
    agency      TEXT,                               -- officers: the agency (cơ quan) whose dossiers they see
    phc         TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    disabled_ms INTEGER
) STRICT;

-- Server-side sessions: the cookie holds a 256-bit random token; only its SHA-256 is stored here.
CREATE TABLE web_sessions (
    token_sha256 TEXT PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES web_users (username) ON DELETE CASCADE,
    csrf         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    seen_ms      INTEGER NOT NULL
) STRICT;
CREATE INDEX web_sessions_user ON web_sessions (username);

-- Who looked at which dossier's personal data, and who changed what (DOMAIN.md §6: access log).
CREATE TABLE web_access_log (
    id       INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    username TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL
) STRICT;

-- One row per dossier for the lists of the dashboard and the officers' workspace, kept from the fold.
CREATE TABLE dossier_index (
    code             TEXT PRIMARY KEY,
    receiving_node   TEXT NOT NULL,
    pickup_node      TEXT NOT NULL,
    procedure_code   TEXT,
    procedure_name   TEXT,
    agency           TEXT,
    state            TEXT NOT NULL,
    status           INTEGER NOT NULL,
    received_at      INTEGER,
    due_at           INTEGER,
    adjusted_due_at  INTEGER,
    promised_at      INTEGER,
    ended_at         INTEGER,
    timeliness       TEXT,
    rating_dislike   INTEGER,
    applicant_masked TEXT NOT NULL DEFAULT '',
    open_conflicts   INTEGER NOT NULL DEFAULT 0,
    updated_ms       INTEGER NOT NULL
) STRICT;
CREATE INDEX dossier_index_agency ON dossier_index (agency, status);
CREATE INDEX dossier_index_due ON dossier_index (adjusted_due_at) WHERE ended_at IS NULL;

-- /readyz proves the database takes writes by updating this one row.
CREATE TABLE health_probe (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    at_ms INTEGER NOT NULL
) STRICT
"""

WEB_MIGRATIONS: list[tuple[str, str]] = [("0100_web_users_sessions_index", _WEB)]
