"""The local org's state in SQLite: sObject rows, metadata components, sessions and the call log.

This is the only module with SQL. The server's threads share one connection behind a re-entrant
lock; ``transaction()`` nests as savepoints, so a metadata save touching several tables, or a whole
deploy with rollbackOnError, is all-or-nothing.

sObject tables are named after their sObject and have one column per field in ``schema``; text
equality in lookups ignores case, which is what Salesforce does for names, and is still exact for
18-character ids (ids that differ only in case differ in their checksum suffix).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.localorg.model import ids, seed
from runbook.localorg.model.schema import BOOLEAN, INT, SOBJECTS
from runbook.work.files import PRIVATE, create_with_mode

Node = dict[str, list[Any]]  # a metadata component: element name -> values (text or Node), in order


@dataclass(frozen=True)
class ApiCall:
    """One API request the org served; ``operation`` is e.g. "rest.query" or "mdapi.createMetadata"."""

    seq: int
    method: str
    path: str
    operation: str
    is_write: bool
    status: int


@dataclass
class Component:
    """A stored metadata component. The consumer key and secret live beside the definition, not in it."""

    type: str
    full_name: str
    definition: Node
    consumer_key: str | None = None
    consumer_secret: str | None = field(default=None, repr=False)
    sobject_id: str | None = None
    parent: str | None = None  # the External Client App a satellite settings/policies component belongs to
    created_date: str = ""
    last_modified_date: str = ""


def now_text() -> str:
    """Now, in Salesforce's REST datetime format."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


_INTERNAL_COLUMNS = {"User": ('"_password_hash" TEXT',)}
_UNIQUE = (
    'CREATE UNIQUE INDEX IF NOT EXISTS user_username ON "User" (Username COLLATE NOCASE)',
    'CREATE UNIQUE INDEX IF NOT EXISTS permset_name ON "PermissionSet" (Name COLLATE NOCASE)',
    'CREATE UNIQUE INDEX IF NOT EXISTS psa_pair ON "PermissionSetAssignment" (AssigneeId, PermissionSetId)',
    'CREATE UNIQUE INDEX IF NOT EXISTS sea_pair ON "SetupEntityAccess" (ParentId, SetupEntityId)',
)
_TABLES = (
    "CREATE TABLE IF NOT EXISTS setting (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counter (sobject TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS metadata_component (
        type TEXT NOT NULL, full_name TEXT NOT NULL COLLATE NOCASE, definition TEXT NOT NULL,
        consumer_key TEXT UNIQUE, consumer_secret TEXT, sobject_id TEXT, parent TEXT COLLATE NOCASE,
        created_date TEXT NOT NULL, last_modified_date TEXT NOT NULL, PRIMARY KEY (type, full_name))""",
    """CREATE TABLE IF NOT EXISTS access_token (
        digest TEXT PRIMARY KEY, user_id TEXT NOT NULL, app_id TEXT, scopes TEXT NOT NULL,
        kind TEXT NOT NULL, issued_at REAL NOT NULL, expires_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS oauth_approval (
        app_id TEXT NOT NULL, user_id TEXT NOT NULL, approved_at TEXT NOT NULL,
        PRIMARY KEY (app_id, user_id))""",
    """CREATE TABLE IF NOT EXISTS deploy_request (
        id TEXT PRIMARY KEY, result TEXT NOT NULL, created_at TEXT NOT NULL)""",
    # A refresh token belongs to a grant (one user's authorization of one app, from one code exchange);
    # rotation replaces the token within its grant, and revoking the grant ends its access tokens too.
    """CREATE TABLE IF NOT EXISTS refresh_token (
        digest TEXT PRIMARY KEY, grant_id TEXT NOT NULL, user_id TEXT NOT NULL, app_id TEXT NOT NULL,
        scopes TEXT NOT NULL, granted_at REAL NOT NULL, issued_at REAL NOT NULL, last_used_at REAL NOT NULL,
        replaced INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS refresh_token_grant ON refresh_token (grant_id)",
    """CREATE TABLE IF NOT EXISTS grant_access_token (
        access_digest TEXT PRIMARY KEY, grant_id TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS call_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
        operation TEXT NOT NULL, is_write INTEGER NOT NULL, status INTEGER NOT NULL)""",
)


def _column_type(field_type: str) -> str:
    return "INTEGER" if field_type in (BOOLEAN, INT) else "TEXT"


def _sobject_ddl(name: str) -> str:
    columns = [f'"{f.name}" {_column_type(f.type)}' + (" PRIMARY KEY" if f.name == "Id" else "")
               for f in SOBJECTS[name].fields]
    columns += _INTERNAL_COLUMNS.get(name, ())
    return f'CREATE TABLE IF NOT EXISTS "{name}" ({", ".join(columns)})'


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Give the tables of a state made by an older version the fields ``schema`` has gained since (as null)."""
    for name, sobject in SOBJECTS.items():
        have = {row[1] for row in db.execute(f'PRAGMA table_info("{name}")')}
        for f in sobject.fields:
            if f.name not in have:
                db.execute(f'ALTER TABLE "{name}" ADD COLUMN "{f.name}" {_column_type(f.type)}')


class Store:
    """All state of one local org, in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        create_with_mode(path, PRIVATE)  # consumer secrets are in it: sqlite alone would make it 0644
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self.transaction() as db:
            for ddl in (*_TABLES, *(_sobject_ddl(name) for name in SOBJECTS), *_UNIQUE):
                db.execute(ddl)
            _add_missing_columns(db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all; nested use makes a savepoint."""
        with self._lock:
            depth = self._depth
            self._db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT sp{depth}")
            self._depth += 1
            try:
                yield self._db
            except BaseException:
                self._depth = depth
                self._db.execute("ROLLBACK" if depth == 0 else f"ROLLBACK TO sp{depth}")
                if depth:
                    self._db.execute(f"RELEASE sp{depth}")
                raise
            self._depth = depth
            self._db.execute("COMMIT" if depth == 0 else f"RELEASE sp{depth}")

    # --- settings ---------------------------------------------------------------------------------

    def get_setting(self, name: str, default: Any = None) -> Any:
        with self.transaction() as db:
            row = db.execute("SELECT value FROM setting WHERE name = ?", (name,)).fetchone()
        return json.loads(row["value"]) if row else default

    def set_setting(self, name: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO setting (name, value) VALUES (?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, json.dumps(value)))

    # --- seed -------------------------------------------------------------------------------------

    def is_seeded(self) -> bool:
        return self.get_setting("org_id") is not None

    def seed(self, admin_password_hash: str, org_secret: str) -> str:
        """Create the organization, profiles, their permission sets and users; returns the org id."""
        org_id = ids.random_org_id()
        with self.transaction():
            self.set_setting("org_id", org_id)
            self.set_setting("org_secret", org_secret)
            self.insert("Organization", {"Id": org_id, **seed.ORGANIZATION})
            profile_ids = {}
            for name in seed.PROFILES:
                profile_id = self.insert("Profile", {"Name": name, "UserType": "Standard"})
                profile_ids[name] = profile_id
                # Profile-owned sets carry machine names; Salesforce warns not to rely on them.
                self.insert("PermissionSet", {"Name": f"X{profile_id[:15]}", "Label": profile_id[:15],
                                              "IsOwnedByProfile": True, "ProfileId": profile_id,
                                              "IsCustom": False})
            for user in seed.SEED_USERS:
                user_id = self.insert("User", {
                    "Username": user.username, "FirstName": user.first_name, "LastName": user.last_name,
                    "Name": f"{user.first_name} {user.last_name}", "Email": user.username,
                    "IsActive": user.active, "ProfileId": profile_ids[user.profile], "UserType": "Standard",
                    **seed.user_settings(user.username.split("@")[0])})
                if user.username == seed.ADMIN_USERNAME:
                    self._db.execute('UPDATE "User" SET "_password_hash" = ? WHERE Id = ?',
                                     (admin_password_hash, user_id))
        return org_id

    # --- sObject rows -----------------------------------------------------------------------------

    def new_id(self, sobject: str) -> str:
        with self.transaction() as db:
            db.execute("INSERT INTO counter (sobject, n) VALUES (?, 1) "
                       "ON CONFLICT (sobject) DO UPDATE SET n = n + 1", (sobject,))
            number = db.execute("SELECT n FROM counter WHERE sobject = ?", (sobject,)).fetchone()["n"]
        return ids.make_id(sobject, number)

    def insert(self, sobject: str, values: dict[str, Any]) -> str:
        """Insert one row (Id and audit dates filled in unless given); returns its Id."""
        schema = SOBJECTS[sobject]
        stamp = now_text()
        row = {f.name: stamp for f in schema.fields
               if f.name in ("CreatedDate", "LastModifiedDate", "SystemModstamp")}
        row.update(values)
        with self.transaction() as db:
            row.setdefault("Id", self.new_id(sobject))
            names = ", ".join(f'"{name}"' for name in row)
            marks = ", ".join("?" for _ in row)
            db.execute(f'INSERT INTO "{sobject}" ({names}) VALUES ({marks})', list(row.values()))
        return row["Id"]

    def update(self, sobject: str, record_id: str, values: dict[str, Any]) -> None:
        values = dict(values)
        if SOBJECTS[sobject].field("LastModifiedDate"):
            values.setdefault("LastModifiedDate", now_text())
        assignments = ", ".join(f'"{name}" = ?' for name in values)
        with self.transaction() as db:
            db.execute(f'UPDATE "{sobject}" SET {assignments} WHERE Id = ?', [*values.values(), record_id])

    def delete(self, sobject: str, **equals: Any) -> int:
        """Delete the rows whose fields equal ``equals`` (text ignoring case); returns how many."""
        where, args = self._where(equals)
        with self.transaction() as db:
            return db.execute(f'DELETE FROM "{sobject}" WHERE {where}', args).rowcount

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Every row of ``sobject`` as {field: value} with Python types, in Id order."""
        return self.find(sobject)

    def find(self, sobject: str, **equals: Any) -> list[dict[str, Any]]:
        """The rows whose fields equal ``equals`` (text ignoring case), in Id order."""
        schema = SOBJECTS[sobject]
        where, args = self._where(equals)
        columns = ", ".join(f'"{f.name}"' for f in schema.fields)
        with self.transaction() as db:
            rows = db.execute(f'SELECT {columns} FROM "{sobject}" WHERE {where} ORDER BY Id', args).fetchall()
        booleans = [f.name for f in schema.fields if f.type == BOOLEAN]
        out = []
        for row in rows:
            record = dict(row)
            for name in booleans:
                record[name] = bool(record[name]) if record[name] is not None else None
            out.append(record)
        return out

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        rows = self.find(sobject, Id=record_id)
        return rows[0] if rows else None

    @staticmethod
    def _where(equals: dict[str, Any]) -> tuple[str, list[Any]]:
        if not equals:
            return "1 = 1", []
        clauses = [f'"{name}" IS NULL' if value is None else f'"{name}" = ? COLLATE NOCASE'
                   for name, value in equals.items()]
        return " AND ".join(clauses), [value for value in equals.values() if value is not None]

    def password_hash(self, user_id: str) -> str | None:
        with self.transaction() as db:
            row = db.execute('SELECT "_password_hash" FROM "User" WHERE Id = ?', (user_id,)).fetchone()
        return row[0] if row else None

    def permission_set_ids_of(self, user_id: str) -> set[str]:
        """The user's profile-owned permission set plus every set assigned to them."""
        with self.transaction() as db:
            rows = db.execute(
                'SELECT ps.Id FROM "PermissionSet" ps JOIN "User" u ON ps.ProfileId = u.ProfileId '
                "WHERE u.Id = ? AND ps.IsOwnedByProfile = 1 "
                'UNION SELECT PermissionSetId FROM "PermissionSetAssignment" WHERE AssigneeId = ?',
                (user_id, user_id)).fetchall()
        return {row[0] for row in rows}

    # --- metadata components ----------------------------------------------------------------------

    def component(self, type_: str, full_name: str) -> Component | None:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM metadata_component WHERE type = ? AND full_name = ?",
                             (type_, full_name)).fetchone()
        return self._component(row) if row else None

    def components(self, type_: str, *, parent: str | None = None) -> list[Component]:
        """Every component of ``type_`` (belonging to External Client App ``parent`` if given), by name."""
        sql, args = "SELECT * FROM metadata_component WHERE type = ?", [type_]
        if parent is not None:
            sql, args = sql + " AND parent = ?", [*args, parent]
        with self.transaction() as db:
            rows = db.execute(sql + " ORDER BY full_name", args).fetchall()
        return [self._component(row) for row in rows]

    def component_by_consumer_key(self, consumer_key: str) -> Component | None:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM metadata_component WHERE consumer_key = ?",
                             (consumer_key,)).fetchone()
        return self._component(row) if row else None

    def consumer_secret_in_use(self, secret: str) -> bool:
        with self.transaction() as db:
            row = db.execute("SELECT 1 FROM metadata_component WHERE consumer_secret = ?",
                             (secret,)).fetchone()
        return row is not None

    def save_component(self, component: Component) -> None:
        """Insert or replace ``component``, keeping its created date."""
        stamp = now_text()
        component.created_date = component.created_date or stamp
        component.last_modified_date = stamp
        with self.transaction() as db:
            db.execute(
                "INSERT INTO metadata_component (type, full_name, definition, consumer_key, consumer_secret, "
                "sobject_id, parent, created_date, last_modified_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (type, full_name) DO UPDATE SET definition = excluded.definition, "
                "consumer_key = excluded.consumer_key, consumer_secret = excluded.consumer_secret, "
                "sobject_id = excluded.sobject_id, parent = excluded.parent, "
                "last_modified_date = excluded.last_modified_date",
                (component.type, component.full_name, json.dumps(component.definition),
                 component.consumer_key, component.consumer_secret, component.sobject_id, component.parent,
                 component.created_date, component.last_modified_date))

    def delete_component(self, type_: str, full_name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM metadata_component WHERE type = ? AND full_name = ?", (type_, full_name))

    @staticmethod
    def _component(row: sqlite3.Row) -> Component:
        return Component(type=row["type"], full_name=row["full_name"],
                         definition=json.loads(row["definition"]), consumer_key=row["consumer_key"],
                         consumer_secret=row["consumer_secret"], sobject_id=row["sobject_id"],
                         parent=row["parent"], created_date=row["created_date"],
                         last_modified_date=row["last_modified_date"])

    # --- sessions and approvals -------------------------------------------------------------------

    def save_token(self, digest: str, *, user_id: str, app_id: str | None, scopes: str, kind: str,
                   seconds: int) -> None:
        issued = time.time()
        with self.transaction() as db:
            db.execute("INSERT INTO access_token (digest, user_id, app_id, scopes, kind, issued_at, "
                       "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (digest, user_id, app_id, scopes, kind, issued, issued + seconds))

    def token(self, digest: str) -> dict[str, Any] | None:
        """The live session with this token digest, or None (unknown or expired)."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM access_token WHERE digest = ? AND expires_at > ?",
                             (digest, time.time())).fetchone()
        return dict(row) if row else None

    def revoke_tokens(self, app_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM access_token WHERE app_id = ?", (app_id,))

    def record_approval(self, app_id: str, user_id: str) -> None:
        """Remember that ``user_id`` approved the app (ConnectedApplication or ExternalClientApplication Id).

        Salesforce records this when a user clicks "Allow" in the web server flow; the local org's
        authorize endpoint does when it issues a code to a logged-in user.
        """
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO oauth_approval (app_id, user_id, approved_at) VALUES (?, ?, ?)",
                       (ids.normalize(app_id) or app_id, ids.normalize(user_id) or user_id, now_text()))

    def has_approval(self, app_id: str, user_id: str) -> bool:
        with self.transaction() as db:
            row = db.execute("SELECT 1 FROM oauth_approval WHERE app_id = ? AND user_id = ?",
                             (app_id, user_id)).fetchone()
        return row is not None

    def forget_approvals(self, app_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM oauth_approval WHERE app_id = ?", (app_id,))

    # --- the org's clock, sessions on it, refresh tokens ------------------------------------------------

    def clock(self, offset_setting: str) -> float:
        """The org's time (POSIX seconds): this machine's clock moved by the setting ``offset_setting``."""
        return time.time() + float(self.get_setting(offset_setting, 0) or 0)

    def save_token_at(self, digest: str, *, user_id: str, app_id: str | None, scopes: str, kind: str,
                      issued_at: float, seconds: float, grant_id: str | None = None) -> None:
        """An access token issued at ``issued_at`` (the org's clock); ``grant_id`` ties it to a refresh grant."""
        with self.transaction() as db:
            db.execute("INSERT INTO access_token (digest, user_id, app_id, scopes, kind, issued_at, "
                       "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (digest, user_id, app_id, scopes, kind, issued_at, issued_at + seconds))
            if grant_id:
                db.execute("INSERT INTO grant_access_token (access_digest, grant_id) VALUES (?, ?)",
                           (digest, grant_id))

    def token_at(self, digest: str, now: float) -> dict[str, Any] | None:
        """The session with this token digest if it is still live at ``now`` (the org's clock), else None."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM access_token WHERE digest = ? AND expires_at > ?",
                             (digest, now)).fetchone()
        return dict(row) if row else None

    def revoke_access_token(self, digest: str) -> bool:
        """End one session; False when there was none with this digest."""
        with self.transaction() as db:
            db.execute("DELETE FROM grant_access_token WHERE access_digest = ?", (digest,))
            return db.execute("DELETE FROM access_token WHERE digest = ?", (digest,)).rowcount > 0

    def save_refresh_token(self, digest: str, *, grant_id: str, user_id: str, app_id: str, scopes: str,
                           granted_at: float, issued_at: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO refresh_token (digest, grant_id, user_id, app_id, scopes, granted_at, "
                       "issued_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (digest, grant_id, user_id, app_id, scopes, granted_at, issued_at, issued_at))

    def refresh_token(self, digest: str) -> dict[str, Any] | None:
        """The refresh token with this digest (also one rotation replaced: ``replaced`` says so), or None."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM refresh_token WHERE digest = ?", (digest,)).fetchone()
        return dict(row) if row else None

    def use_refresh_token(self, digest: str, now: float, *, replace: bool) -> bool:
        """Record a use at ``now``, ``replace`` marking the token spent (rotation issues its successor).

        False when the token is gone or already spent: the check and the update are one statement, so of
        two concurrent rotations of one token only one wins.
        """
        with self.transaction() as db:
            return db.execute("UPDATE refresh_token SET last_used_at = ?, replaced = ? WHERE digest = ? "
                              "AND replaced = 0", (now, int(replace), digest)).rowcount > 0

    def drop_refresh_tokens(self, grant_id: str) -> None:
        """Forget a grant's refresh tokens (expired by policy); its live sessions stay."""
        with self.transaction() as db:
            db.execute("DELETE FROM refresh_token WHERE grant_id = ?", (grant_id,))

    def revoke_grant(self, grant_id: str) -> int:
        """Revoke a grant: its refresh tokens and every access token issued from it; returns the sessions ended."""
        with self.transaction() as db:
            db.execute("DELETE FROM refresh_token WHERE grant_id = ?", (grant_id,))
            ended = db.execute("DELETE FROM access_token WHERE digest IN (SELECT access_digest FROM "
                               "grant_access_token WHERE grant_id = ?)", (grant_id,)).rowcount
            db.execute("DELETE FROM grant_access_token WHERE grant_id = ?", (grant_id,))
        return ended

    # --- deploys and the call log -----------------------------------------------------------------

    def save_deploy(self, deploy_id: str, result: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO deploy_request (id, result, created_at) VALUES (?, ?, ?)",
                       (deploy_id, json.dumps(result), now_text()))

    def deploy(self, deploy_id: str) -> dict[str, Any] | None:
        with self.transaction() as db:
            row = db.execute("SELECT result FROM deploy_request WHERE id = ?", (deploy_id,)).fetchone()
        return json.loads(row["result"]) if row else None

    def log_call(self, method: str, path: str, operation: str, is_write: bool, status: int) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO call_log (at, method, path, operation, is_write, status) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (time.time(), method, path, operation, int(is_write), status))

    def call_log(self) -> list[ApiCall]:
        with self.transaction() as db:
            rows = db.execute("SELECT seq, method, path, operation, is_write, status FROM call_log "
                              "ORDER BY seq").fetchall()
        return [ApiCall(row["seq"], row["method"], row["path"], row["operation"], bool(row["is_write"]),
                        row["status"]) for row in rows]
