"""The least-privilege PostgreSQL role Superset connects as: scoring through sqlml_user, the demo tables, nothing else.

Anyone with SQL Lab runs arbitrary SQL as this role, so it must not be a superuser (who reads
`sqlml_private.bridge_tokens`), a member of `sqlml_admin`, or able to create objects. It is a
member of the extension's `sqlml_user` (EXECUTE on the `ml.*` scoring functions, which read the
bridge token internally, SECURITY DEFINER) and may SELECT exactly the relations the dashboards chart.
Like the demo tables, the role carries a COMMENT marker: provisioning changes only a role it created.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import psycopg
from psycopg import sql

from .demo_tables import MARKER, SCHEMA
from .provision import ProvisionError

DEFAULT_ROLE = "sqlml_superset"
SCORING_ROLE = "sqlml_user"
ADMIN_ROLE = "sqlml_admin"
ROLE_COMMENT = f"{MARKER}: the login Superset connects as (sqlml_user + SELECT on the demo tables)"

Report = Callable[[str], None]


@dataclass(frozen=True)
class SupersetLogin:
    """The role Superset's database connection uses; no password means trust/peer authentication."""

    role: str = DEFAULT_ROLE
    password: str = ""

    def uri(self, host: str, port: int, database: str) -> str:
        """The SQLAlchemy URI Superset's venv (psycopg2) connects with."""
        auth = quote(self.role, safe="") + (f":{quote(self.password, safe='')}" if self.password else "")
        return f"postgresql+psycopg2://{auth}@{host}:{port}/{quote(database, safe='')}"


def ensure_role(
    conn: psycopg.Connection, login: SupersetLogin, database: str, relations: Sequence[str], report: Report
) -> None:
    """Create (once) and grant the role, then check it holds no more than it should."""
    _create_or_check(conn, login.role, report)
    role = sql.Identifier(login.role)
    if login.password:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(login.password)))
        report(f"role {login.role}: password set")
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(SCORING_ROLE), role))
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(SCHEMA), role))
    names = sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(r)) for r in relations)
    conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(names, role))
    verify_least_privilege(conn, login.role)
    report(f"role {login.role}: member of {SCORING_ROLE}, SELECT on " + ", ".join(relations))


def verify_least_privilege(conn: psycopg.Connection, role: str) -> None:
    """Stop when the role could do more than score and read: the dashboards' URI must not be a key to the database."""
    problems = _attribute_problems(conn, role) + _membership_problems(conn, role) + _schema_problems(conn, role)
    if problems:
        raise ProvisionError(f"role {role} has more privileges than Superset may hold:\n  " + "\n  ".join(problems))


def _create_or_check(conn: psycopg.Connection, role: str, report: Report) -> None:
    row = conn.execute("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    if row is None:
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            ).format(sql.Identifier(role))
        )
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(ROLE_COMMENT)))
        report(f"created role {role}")
    elif not (row[0] or "").startswith(MARKER):
        raise ProvisionError(
            f"role {role} exists but was not created by sqlml's Superset provisioning, which never changes "
            "roles it did not create. Pass --superset-role with another name; or hand it over with: "
            f"COMMENT ON ROLE {role} IS '{ROLE_COMMENT}'"
        )


def _attribute_problems(conn: psycopg.Connection, role: str) -> list[str]:
    row = conn.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin "
        "FROM pg_roles WHERE rolname = %s",
        [role],
    ).fetchone()
    assert row is not None
    names = ("SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS")
    problems = [f"has {name}" for name, value in zip(names, row[:5], strict=True) if value]
    return problems if row[5] else [*problems, "cannot log in (NOLOGIN)"]


def _membership_problems(conn: psycopg.Connection, role: str) -> list[str]:
    granted = {
        str(name)
        for (name,) in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s",
            [role],
        ).fetchall()
    }
    problems = [f"is a member of {name} (only {SCORING_ROLE} is expected)" for name in sorted(granted - {SCORING_ROLE})]
    admin = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [role, ADMIN_ROLE]).fetchone()
    if admin is not None and admin[0] and ADMIN_ROLE not in granted:
        problems.append(f"is a member of {ADMIN_ROLE} through another role")
    return problems


def _schema_problems(conn: psycopg.Connection, role: str) -> list[str]:
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE has_schema_privilege(%s, oid, 'CREATE') "
        "AND nspname NOT LIKE 'pg\\_temp\\_%%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' ORDER BY nspname",
        [role],
    ).fetchall()
    return [f"may CREATE in schema {name} (e.g. REVOKE CREATE ON SCHEMA {name} FROM PUBLIC)" for (name,) in rows]
