"""PostgreSQL from Debian's server binaries, with its data dir in the state folder.

postgres refuses to run as root, so under root it runs as `services.postgres.os_user`. The
bootstrap superuser (SUPERUSER) only logs in over the Unix socket inside the 0700 data folder
(trust); over TCP only the password-protected role from params.yaml gets in.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from genpipe.config import ServicesConfig
from genpipe.services.credentials import write_private
from genpipe.services.settings import Layout, ServiceError, url_host
from genpipe.services.supervisor import Program

SUPERUSER = "postgres"
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux


def run_as(config: ServicesConfig) -> str | None:
    """The account postgres runs as: the configured one under root, else the current user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(config.postgres.os_user)
    except KeyError:
        raise ServiceError(
            f"services.postgres.os_user: no account {config.postgres.os_user!r}; postgres refuses "
            "root. `apt-get install postgresql` creates `postgres`, or `useradd --system NAME`."
        ) from None
    return config.postgres.os_user


def masked_uri(config: ServicesConfig, database: str, driver: str = "postgresql") -> str:
    pg = config.postgres
    return f"{driver}://{pg.user}:***@{url_host(config.host)}:{pg.port}/{database}"


def mlflow_backend_uri(config: ServicesConfig, database: str | None = None) -> str:
    """The MLflow server's store (or its auth database); the password comes from PGPASSFILE,
    not the command line."""
    pg = config.postgres
    return (
        f"postgresql+psycopg2://{pg.user}@{url_host(config.host)}:{pg.port}/"
        f"{database or pg.mlflow_db}?connect_timeout={pg.connect_timeout_seconds}"
    )


def prefect_database_url(config: ServicesConfig, password: str) -> str:
    from urllib.parse import quote

    pg = config.postgres
    return (
        f"postgresql+asyncpg://{pg.user}:{quote(password, safe='')}@{url_host(config.host)}:"
        f"{pg.port}/{pg.prefect_db}"
    )


def write_pgpass(config: ServicesConfig, layout: Layout, password: str) -> None:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    write_private(layout.pgpass, f"*:*:*:{config.postgres.user}:{escaped}\n")


def _owned_dir(path: Path, user: str | None, mode: int = 0o700) -> None:
    path.mkdir(mode=mode, exist_ok=True)
    path.chmod(mode)
    if user is not None:
        shutil.chown(path, user, pwd.getpwnam(user).pw_gid)


def _check_reachable(path: Path, user: str) -> None:
    """Every folder above `path` must let `user` through, or postgres cannot open its data dir."""
    account = pwd.getpwnam(user)
    groups = {account.pw_gid} | {g for g in os.getgrouplist(user, account.pw_gid)}
    for folder in path.parents:
        st = folder.stat()
        if st.st_uid == account.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise ServiceError(
                f"the {user!r} account cannot enter {folder} (mode {stat.filemode(st.st_mode)}), "
                f"so postgres cannot reach {path}: `chmod o+x {folder}` or set "
                "services.state_dir (GENPIPE_SERVICES_STATE_DIR) elsewhere"
            )


def init_cluster(config: ServicesConfig, layout: Layout, initdb: Path) -> bool:
    """Create the data dir once (initdb into a temp dir, then rename). True if it was created."""
    if (layout.postgres_data / "PG_VERSION").exists():
        return False
    user = run_as(config)
    socket_file = layout.postgres / f".s.PGSQL.{config.postgres.port}"
    if len(str(socket_file)) > _SOCKET_PATH_MAX:
        raise ServiceError(
            f"{socket_file}: too long for a Unix socket ({_SOCKET_PATH_MAX} bytes max); "
            "set services.state_dir (GENPIPE_SERVICES_STATE_DIR) to a shorter path"
        )
    _owned_dir(layout.postgres, user)
    if user is not None:
        _check_reachable(layout.postgres, user)
    tmp = layout.postgres / "data.init"
    shutil.rmtree(tmp, ignore_errors=True)
    done = subprocess.run(
        [str(initdb), "-D", str(tmp), "-U", SUPERUSER, "-E", "UTF8", "--no-instructions",
         "--auth-local=trust", "--auth-host=scram-sha-256"],
        user=user, cwd=layout.postgres, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ServiceError(f"initdb failed for {layout.postgres_data}:\n{done.stderr[-2000:]}")
    # local: only the superuser, only through the socket in the 0700 folder; TCP: password only
    (tmp / "pg_hba.conf").write_text(
        f"local all {SUPERUSER} trust\n"
        f"host all {SUPERUSER} all reject\n"
        "host all all all scram-sha-256\n"
    )
    if user is not None:
        shutil.chown(tmp / "pg_hba.conf", user, pwd.getpwnam(user).pw_gid)
    tmp.rename(layout.postgres_data)
    return True


def program(config: ServicesConfig, layout: Layout, postgres: Path) -> Program:
    """The postgres server; SIGINT is its fast shutdown (SIGTERM would wait for every client)."""
    argv = [
        str(postgres), "-D", str(layout.postgres_data), "-p", str(config.postgres.port),
        "-c", f"listen_addresses={config.host}",
        "-c", f"unix_socket_directories={layout.postgres}",
        "-c", "password_encryption=scram-sha-256",
    ]  # fmt: skip
    return Program(
        "postgres", argv, {"LANG": "C.UTF-8"}, layout.postgres, run_as(config), stop_signal="INT"
    )


def _connect(config: ServicesConfig, **kwargs: object):
    import psycopg2

    return psycopg2.connect(connect_timeout=config.postgres.connect_timeout_seconds, **kwargs)


def probe_socket(config: ServicesConfig, layout: Layout) -> str | None:
    """None once postgres accepts the superuser on its socket (the first readiness step)."""
    import psycopg2

    try:
        _connect(
            config,
            host=str(layout.postgres),
            port=config.postgres.port,
            user=SUPERUSER,
            dbname="postgres",
        ).close()
    except psycopg2.OperationalError as exc:
        return str(exc).strip().splitlines()[0]
    return None


def probe(config: ServicesConfig, password: str) -> str | None:
    """None if the role can log in over TCP and run a query in both databases, else why not."""
    import psycopg2

    pg = config.postgres
    for db in (pg.mlflow_db, pg.prefect_db):
        try:
            conn = _connect(
                config, host=config.host, port=pg.port, user=pg.user, password=password, dbname=db
            )
            with conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
            conn.close()
        except psycopg2.Error as exc:
            reason = str(exc).strip().splitlines()[0]
            return f"{masked_uri(config, db)}: {reason}"
    return None


def ensure_role_and_databases(config: ServicesConfig, layout: Layout, password: str) -> None:
    """Create (or update the password of) the role and create the databases it owns."""
    from psycopg2 import sql

    pg = config.postgres
    conn = _connect(
        config, host=str(layout.postgres), port=pg.port, user=SUPERUSER, dbname="postgres"
    )
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (pg.user,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(
                sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD %s").format(sql.Identifier(pg.user)),
                (password,),
            )
            for db in (pg.mlflow_db, pg.mlflow_auth_db, pg.prefect_db):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
                            sql.Identifier(db), sql.Identifier(pg.user)
                        )
                    )
    finally:
        conn.close()
