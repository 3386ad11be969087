"""The hub's SQL schema as named migration steps, applied once in order and recorded."""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

_CORE = """
CREATE TABLE nodes (
    node          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('branch', 'van', 'point')),
    name          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('invited', 'active', 'quarantined', 'revoked')),
    status_reason TEXT NOT NULL DEFAULT '',
    epoch         INTEGER NOT NULL DEFAULT 0,      -- current epoch (0 until enrolled)
    created_ms    INTEGER NOT NULL,
    last_seen_ms  INTEGER
) STRICT;

-- One row per (node, epoch): the key bound at enrollment, what its genesis must name, and the seal.
CREATE TABLE node_epochs (
    node          TEXT NOT NULL REFERENCES nodes (node),
    epoch         INTEGER NOT NULL CHECK (epoch >= 1),
    key           TEXT NOT NULL UNIQUE,
    enrolled_ms   INTEGER NOT NULL,
    prev_epoch    INTEGER,                          -- genesis "previous" (NULL at epoch 1)
    prev_seq      INTEGER,
    prev_head     TEXT,
    sealed_ms     INTEGER,                          -- set when a later epoch starts: no more pushes
    revoked_after INTEGER,                          -- revocation cut: entries after it are not trusted
    PRIMARY KEY (node, epoch)
) STRICT;

CREATE TABLE invites (
    secret_sha256 TEXT PRIMARY KEY,
    node          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    used_ms       INTEGER
) STRICT;

-- Every entry of every log (node logs and the hub's own), exactly the canonical bytes received.
CREATE TABLE entries (
    log         TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    time_n      INTEGER NOT NULL,
    dossier     TEXT,
    raw         BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (log, epoch, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX entries_dossier ON entries (dossier) WHERE dossier IS NOT NULL;

CREATE TABLE heads (
    log     TEXT NOT NULL,
    epoch   INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    hash    TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    time_n  INTEGER NOT NULL,
    PRIMARY KEY (log, epoch)
) STRICT, WITHOUT ROWID;

-- Every receipt the hub signed (motcua-central verify re-checks them all).
CREATE TABLE receipts (
    log      TEXT NOT NULL,
    epoch    INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    head     TEXT NOT NULL,
    hub_time INTEGER NOT NULL,
    sig      TEXT NOT NULL,
    PRIMARY KEY (log, epoch, seq)
) STRICT, WITHOUT ROWID;

-- Entries kept but held for a person: body invalid for its kind, or pushed after a revocation cut.
CREATE TABLE quarantine (
    log        TEXT NOT NULL,
    epoch      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    code       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    decision   TEXT CHECK (decision IN ('accepted', 'rejected')),
    decided_ms INTEGER,
    PRIMARY KEY (log, epoch, seq)
) STRICT;

-- Equivocation evidence: a second validly signed entry at a stored position.
CREATE TABLE forks (
    id           INTEGER PRIMARY KEY,
    log          TEXT NOT NULL,
    epoch        INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    stored_hash  TEXT NOT NULL,
    offered_hash TEXT NOT NULL,
    offered_raw  BLOB NOT NULL,
    detected_ms  INTEGER NOT NULL,
    UNIQUE (log, epoch, seq, offered_hash)
) STRICT;

CREATE TABLE alarms (
    id         INTEGER PRIMARY KEY,
    node       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    message    TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    cleared_ms INTEGER
) STRICT;

CREATE TABLE blobs (
    sha256       TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    media_type   TEXT NOT NULL,
    manifest     BLOB NOT NULL,                    -- canonical manifest from the signed entry
    state        TEXT NOT NULL CHECK (state IN ('partial', 'complete')),
    created_ms   INTEGER NOT NULL,
    completed_ms INTEGER
) STRICT;
CREATE TABLE blob_chunks (
    sha256 TEXT NOT NULL,
    idx    INTEGER NOT NULL,
    PRIMARY KEY (sha256, idx)
) STRICT, WITHOUT ROWID;
-- Which entries reference a blob: a node may upload or fetch only blobs its logs or mailbox name.
CREATE TABLE blob_refs (
    sha256 TEXT NOT NULL,
    log    TEXT NOT NULL,
    epoch  INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (sha256, log, epoch, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE heartbeats (
    node        TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    skew_ms     INTEGER NOT NULL,
    body        BLOB NOT NULL,
    PRIMARY KEY (node, received_ms)
) STRICT, WITHOUT ROWID;

CREATE TABLE officers (
    officer       TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE,
    created_ms    INTEGER NOT NULL,
    disabled_ms   INTEGER
) STRICT;

-- Routing and tracking facts per dossier, kept current by the fold after each commit.
CREATE TABLE dossiers (
    code           TEXT PRIMARY KEY,
    receiving_node TEXT NOT NULL,
    pickup_node    TEXT NOT NULL,
    lookup         BLOB,                            -- canonical lookup-code hash object, or NULL
    state          BLOB NOT NULL,                   -- canonical public view (status, timeline, due)
    conflicts      INTEGER NOT NULL DEFAULT 0,
    updated_ms     INTEGER NOT NULL
) STRICT;
CREATE TABLE dossier_conflicts (
    code      TEXT NOT NULL,
    log       TEXT NOT NULL,
    epoch     INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    reason    TEXT NOT NULL,
    found_ms  INTEGER NOT NULL,
    PRIMARY KEY (code, log, epoch, seq)
) STRICT;
"""

MIGRATIONS: list[tuple[str, str]] = [("0001_hub_core", _CORE)]

# The web side's own steps (users, sessions, access log, dossier index), kept in their own module.
from central.webschema import WEB_MIGRATIONS  # noqa: E402

MIGRATIONS += WEB_MIGRATIONS

# Relay between branches (central.relay): node dossier entries to forward to the other involved branches.
_RELAY = """
CREATE TABLE relay_outbox (
    id       INTEGER PRIMARY KEY,
    log      TEXT NOT NULL,
    epoch    INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    hash     TEXT NOT NULL UNIQUE,
    dossier  TEXT NOT NULL,
    done_ms  INTEGER
) STRICT;
CREATE INDEX relay_outbox_pending ON relay_outbox (id) WHERE done_ms IS NULL
"""
RELAY_MIGRATIONS: list[tuple[str, str]] = [("0200_relay_outbox", _RELAY)]
MIGRATIONS += RELAY_MIGRATIONS

# Node key rotation as a threshold decision (central.noderotation, SPEC §7.11): requests signed by a node's
# old and new keys, and the hub admins' approvals (who, when, what: node + new key fingerprint).
_NODE_ROTATION = """
CREATE TABLE rotation_requests (
    id          TEXT PRIMARY KEY,                   -- SHA-256 of the canonical request
    node        TEXT NOT NULL REFERENCES nodes (node),
    epoch       INTEGER NOT NULL,
    new_key     TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    raw         BLOB NOT NULL,                      -- the request, canonical
    created_ms  INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'refused')),
    reason      TEXT NOT NULL DEFAULT '',
    decided_ms  INTEGER,
    enrollment  BLOB                                -- accepted: the hub-signed enrollment of the new epoch
) STRICT;
CREATE INDEX rotation_requests_pending ON rotation_requests (node) WHERE status = 'pending';

CREATE TABLE rotation_approvals (
    request     TEXT NOT NULL REFERENCES rotation_requests (id),
    admin       TEXT NOT NULL,
    node        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,                      -- what the admin approved: the new key
    approved_ms INTEGER NOT NULL,
    PRIMARY KEY (request, admin)
) STRICT
"""
MIGRATIONS += [("0300_node_key_rotation", _NODE_ROTATION)]

# Offline leases (central.leases, SPEC §7.12): per-node duration override and the last lease issued.
_LEASES = """
CREATE TABLE node_leases (
    node       TEXT PRIMARY KEY REFERENCES nodes (node),
    hours      INTEGER CHECK (hours IS NULL OR hours BETWEEN 1 AND 2160),  -- NULL: the hub's lease_hours
    epoch      INTEGER,
    issued_ms  INTEGER,
    expires_ms INTEGER
) STRICT
"""
LEASE_MIGRATIONS: list[tuple[str, str]] = [("0310_node_leases", _LEASES)]
MIGRATIONS += LEASE_MIGRATIONS

# Failed web logins (central.webauth.LoginThrottle): per account ("u:name") and per client IP ("ip:addr"),
# kept in SQLite so a hub restart does not reset the throttle; rows older than a day are pruned.
_LOGIN_FAILURES = """
CREATE TABLE web_login_failures (
    key   TEXT NOT NULL,
    at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX web_login_failures_key ON web_login_failures (key, at_ms);
"""
MIGRATIONS += [("0325_web_login_failures", _LOGIN_FAILURES)]

# TOTP second factor of web users (central.mfa): the secret AES-GCM sealed, the last time step used
# (a code for it or an earlier step is a replay), and single-use recovery codes as SHA-256 digests.
_MFA = """
CREATE TABLE web_user_mfa (
    username     TEXT PRIMARY KEY,
    secret       BLOB NOT NULL,
    created_ms   INTEGER NOT NULL,
    confirmed_ms INTEGER,
    last_step    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE web_mfa_recovery (
    username TEXT NOT NULL,
    digest   TEXT NOT NULL,
    used_ms  INTEGER,
    PRIMARY KEY (username, digest)
) STRICT;
"""
MIGRATIONS += [("0326_web_user_mfa", _MFA)]
