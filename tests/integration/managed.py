"""Servers that behave like managed services, for the production-like tests.

:class:`ElastiCacheLikeRedis` is a container of the stack's Redis image that
speaks TLS only, has no ``default`` user, and gives its admin an ACL user
without the commands ElastiCache withholds (``CONFIG``, ``DEBUG``,
``MODULE``, ``ACL SAVE``/``LOAD``, ``SAVE``, ``SHUTDOWN``, ...). ACL users can
be made with ``ACL SETUSER`` only when ``acl_management`` is on: ElastiCache
itself manages users through its API.

:class:`RdsLikePostgres` is a container of the stack's PostgreSQL image set up
the way RDS runs one: TLS only (its certificate signed by a CA of the test's
own), and the admin handed to users is *not* a superuser: ``CREATEDB``,
``CREATEROLE`` and the ``pg_monitor`` / ``pg_signal_backend`` grants, so
``pg_authid`` is unreadable. The superuser that set it up logs in only over
the container's Unix socket, as RDS keeps ``rdsadmin`` to itself.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Generic, Self, TypeVar

import psycopg
import redis

from infra_lib.gateway.layer import GatewayPaths
from infra_lib.gateway.tls import ensure_tls
from infra_lib.provisioning import read_service_env
from infra_lib.stack.settings import StackSettings

from .conftest import free_port, run_inv

ROOT = Path(__file__).resolve().parents[2]

ADMIN = "infra_admin"

# Run as root in the container: copy the mounted files where the server's
# user may read them (PostgreSQL wants its key 0600 and its own), then start
# as the image does.
_START = """\
set -eu
install -d -o postgres -g postgres -m 700 /tmp/rds
for f in server.crt server.key superuser-password admin-password pg_hba.conf; do
  install -o postgres -g postgres -m 600 "/rds/$f" "/tmp/rds/$f"
done
exec docker-entrypoint.sh postgres -c ssl=on -c ssl_cert_file=/tmp/rds/server.crt \
  -c ssl_key_file=/tmp/rds/server.key -c hba_file=/tmp/rds/pg_hba.conf \
  -c password_encryption=scram-sha-256
"""

# Run once by the image's entrypoint; psql reads the password itself.
_INIT = f"""\
psql -X -v ON_ERROR_STOP=1 -U rdsadmin -d postgres <<'SQL'
\\set pw `cat /tmp/rds/admin-password`
CREATE ROLE {ADMIN} LOGIN CREATEDB CREATEROLE PASSWORD :'pw';
GRANT pg_monitor, pg_signal_backend TO {ADMIN};
SQL
"""

_HBA = """\
local all rdsadmin trust
hostssl all all all scram-sha-256
host all all all reject
"""


def _docker() -> str:
    path = shutil.which("docker")
    assert path is not None, "docker is not installed"
    return path


def _running(name: str) -> bool:
    state = subprocess.run(
        [_docker(), "inspect", "--format", "{{.State.Running}}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return state.stdout.strip() == "true"


def _logs(name: str) -> str:
    logs = subprocess.run([_docker(), "logs", name], capture_output=True, text=True, check=False)
    return logs.stdout + logs.stderr


@dataclass
class _ManagedServer:
    """A container on a free loopback port, with TLS from a CA of its own.

    Its files (certificate, key, passwords, scripts) are written 0600 to
    ``root``, which the container mounts read-only at ``/rds``; a start-up
    script run as root copies them where the server's user may read them.
    """

    root: Path
    name: str
    port: int
    ca_file: Path
    admin_password: str = field(repr=False)

    #: What the server is called in messages, and its port in the container.
    kind: ClassVar[str] = ""
    inner_port: ClassVar[int] = 0

    @classmethod
    def _prepare(cls) -> tuple[Self, GatewayPaths]:
        slug = cls.kind.lower().replace(" ", "-")
        root = Path(tempfile.mkdtemp(prefix=f"infra-{slug}-"))
        tls = GatewayPaths(root / "tls")
        ensure_tls(StackSettings(infra_public_host="127.0.0.1", gateway_host="localhost"), tls)
        server = cls(
            root,
            f"infra-{slug}-{secrets.token_hex(4)}",
            free_port(),
            tls.ca_cert,
            secrets.token_urlsafe(24),
        )
        return server, tls

    def _run(self, image: str, files: dict[str, str], docker_args: list[str]) -> None:
        for file_name, text in files.items():
            (self.root / file_name).write_text(text)
            (self.root / file_name).chmod(0o600)
        started = subprocess.run(
            [
                _docker(), "run", "--detach", "--name", self.name,
                "--publish", f"127.0.0.1:{self.port}:{self.inner_port}",
                "--volume", f"{self.root}:/rds:ro", *docker_args,
                "--user", "0", "--entrypoint", "sh", image, "/rds/start.sh",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        if started.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise AssertionError(f"cannot start the {self.kind} from {image}: {started.stderr}")
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        raise NotImplementedError

    def env_lines(self, password_file: Path) -> str:
        """What a team puts in ``.env.<name>`` for this server."""
        raise NotImplementedError

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while not self._answers():
            if time.monotonic() > deadline or not _running(self.name):
                raise AssertionError(f"the {self.kind} did not start:\n{_logs(self.name)}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Remove the container (and its anonymous volumes) and the files."""
        subprocess.run(
            [_docker(), "rm", "--force", "--volumes", self.name],
            capture_output=True,
            check=False,
            timeout=120,
        )
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RdsLikePostgres(_ManagedServer):
    """A running RDS-like PostgreSQL; :meth:`stop` removes it."""

    kind: ClassVar[str] = "RDS-like PostgreSQL"
    inner_port: ClassVar[int] = 5432

    @classmethod
    def start(cls) -> RdsLikePostgres:
        server, tls = cls._prepare()
        files = {
            "server.crt": tls.cert_file.read_text(),
            "server.key": tls.key_file.read_text(),
            "superuser-password": secrets.token_urlsafe(24),
            "admin-password": server.admin_password,
            "pg_hba.conf": _HBA,
            "start.sh": _START,
            "init.sh": _INIT,
        }
        init = f"{server.root}/init.sh:/docker-entrypoint-initdb.d/admin.sh:ro"
        server._run(
            os.environ.get("POSTGRES_IMAGE") or StackSettings().postgres_image,
            files,
            [
                "--volume", init,
                "--env", "POSTGRES_USER=rdsadmin",
                "--env", "POSTGRES_PASSWORD_FILE=/tmp/rds/superuser-password",
            ],
        )  # fmt: skip
        return server

    def _run(self, image: str, files: dict[str, str], docker_args: list[str]) -> None:
        # The image's entrypoint runs init scripts as its postgres user.
        (self.root / "init.sh").write_text(files["init.sh"])
        (self.root / "init.sh").chmod(0o644)
        super()._run(image, {k: v for k, v in files.items() if k != "init.sh"}, docker_args)

    def connect(self, **overrides: object) -> psycopg.Connection[tuple[object, ...]]:
        """A connection as the admin, over TLS checked against the test's CA."""
        kwargs: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": ADMIN,
            "password": self.admin_password,
            "dbname": "postgres",
            "sslmode": "verify-full",
            "sslrootcert": str(self.ca_file),
            "autocommit": True,
            "connect_timeout": 5,
        }
        return psycopg.connect(**{**kwargs, **overrides})  # type: ignore[arg-type]

    def _answers(self) -> bool:
        try:
            self.connect().close()
        except psycopg.OperationalError:
            return False
        return True

    def sql(self, script: str, dbname: str = "postgres") -> str:
        """Run ``script`` as the hidden superuser (the container's socket); its output."""
        return subprocess.run(
            [
                _docker(), "exec", "--interactive", "--user", "postgres", self.name,
                "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-U", "rdsadmin",
                "-d", dbname,
            ],
            input=script,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout  # fmt: skip

    def env_lines(self, password_file: Path) -> str:
        """What a team puts in ``.env.<name>`` for this server."""
        return (
            f"POSTGRES_HOST=127.0.0.1\nPOSTGRES_PORT={self.port}\nPOSTGRES_USER={ADMIN}\n"
            f"POSTGRES_PASSWORD_FILE={password_file}\nPOSTGRES_SSLMODE=verify-full\n"
            f"POSTGRES_SSLROOTCERT={self.ca_file}\n"
        )


REDIS_ADMIN = "infra-admin"

#: What ElastiCache withholds from its users (its "restricted commands").
_ELASTICACHE_DENIED = (
    "-config -debug -module -acl|save -acl|load -save -bgsave -bgrewriteaof -shutdown "
    "-replicaof -slaveof -sync -psync -migrate -monitor -failover -cluster|reset"
)

_REDIS_START = """\
set -eu
install -d -o redis -g redis -m 700 /tmp/r
for f in server.crt server.key users.acl; do
  install -o redis -g redis -m 600 "/rds/$f" "/tmp/r/$f"
done
cd /tmp/r
exec docker-entrypoint.sh redis-server --port 0 --tls-port 6379 \\
  --tls-cert-file /tmp/r/server.crt --tls-key-file /tmp/r/server.key \\
  --tls-auth-clients no --aclfile /tmp/r/users.acl --databases 16 --appendonly no --save ''
"""


@dataclass
class ElastiCacheLikeRedis(_ManagedServer):
    """A running ElastiCache-like Redis; :meth:`stop` removes it."""

    kind: ClassVar[str] = "ElastiCache-like Redis"
    inner_port: ClassVar[int] = 6379

    @classmethod
    def start(cls, *, acl_management: bool) -> ElastiCacheLikeRedis:
        server, tls = cls._prepare()
        digest = hashlib.sha256(server.admin_password.encode()).hexdigest()
        denied = _ELASTICACHE_DENIED
        if not acl_management:
            denied += " -acl|setuser -acl|deluser"
        files = {
            "server.crt": tls.cert_file.read_text(),
            "server.key": tls.key_file.read_text(),
            "users.acl": (
                "user default off nopass -@all\n"
                f"user {REDIS_ADMIN} on #{digest} ~* &* +@all {denied}\n"
            ),
            "start.sh": _REDIS_START,
        }
        server._run(os.environ.get("REDIS_IMAGE") or "redis:7.4.6-alpine", files, [])
        return server

    def client(self, **overrides: object) -> redis.Redis:
        """A client as the admin, over TLS checked against the test's CA."""
        kwargs: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": REDIS_ADMIN,
            "password": self.admin_password,
            "ssl": True,
            "ssl_ca_certs": str(self.ca_file),
            "socket_timeout": 5,
        }
        return redis.Redis(**{**kwargs, **overrides})  # type: ignore[arg-type]

    def _answers(self) -> bool:
        try:
            with self.client() as client:
                client.ping()
        except (redis.ConnectionError, redis.AuthenticationError, redis.TimeoutError):
            return False
        return True

    def env_lines(self, password_file: Path) -> str:
        """What a team puts in ``.env.<name>`` for this server."""
        return (
            f"REDIS_HOST=127.0.0.1\nREDIS_PORT={self.port}\nREDIS_USERNAME={REDIS_ADMIN}\n"
            f"REDIS_PASSWORD_FILE={password_file}\nREDIS_TLS=true\n"
            f"REDIS_TLS_CA_FILE={self.ca_file}\n"
        )


ServerT = TypeVar("ServerT", bound=_ManagedServer)


@dataclass
class ManagedTarget(Generic[ServerT]):
    """A managed server plus the env file and manifest a team would write for it."""

    server: ServerT
    env_file: Path
    manifest: Path
    env_dir: Path
    folder: Path

    @classmethod
    def write(
        cls, folder: Path, project: str, server: ServerT, manifest: str
    ) -> ManagedTarget[ServerT]:
        password_file = folder / "admin-password"
        password_file.write_text(server.admin_password + "\n")
        password_file.chmod(0o600)
        env_file = folder / f".env.{project}"
        env_file.write_text(f"COMPOSE_PROJECT_NAME={project}\n" + server.env_lines(password_file))
        env_file.chmod(0o600)
        (folder / "infra.toml").write_text(manifest)
        return cls(server, env_file, folder / "infra.toml", ROOT / "env" / project, folder)

    @property
    def backups(self) -> Path:
        return self.folder / "backups"

    def inv(self, *args: str) -> tuple[int, str, str]:
        """``inv ARGS --manifest ... --env-file ...``: exit status, stdout, stderr."""
        result = run_inv(*args, "--manifest", str(self.manifest), env_file=self.env_file)
        return result.returncode, result.stdout, result.stderr

    def service(self, name: str) -> dict[str, str]:
        """The env file provisioning wrote for ``name``."""
        return read_service_env(self.env_dir, name).values

    def remove(self) -> None:
        """Stop the server; remove the env files provisioning wrote for it."""
        self.server.stop()
        shutil.rmtree(self.env_dir, ignore_errors=True)


#: The domain MinIO serves virtual-host requests under, like ``s3.<region>.amazonaws.com``.
S3_DOMAIN = "s3.eu-west-1.infra-aws-like.test"
S3_REGION = "eu-west-1"
_HOSTS = Path("/etc/hosts")
_HOSTS_MARK = "# infra-lib aws-like test"


@dataclass
class AwsLikeS3(_ManagedServer):
    """MinIO answering virtual-host-style requests, in a region other than us-east-1.

    ``bucket.S3_DOMAIN`` must resolve to loopback: :meth:`resolve` adds the
    names to ``/etc/hosts`` (marked, and removed again by :meth:`stop`), as
    a developer's DNS would for a real endpoint. Plain HTTP: the point here
    is addressing and region, TLS is covered by the other servers.
    """

    kind: ClassVar[str] = "AWS-like S3"
    inner_port: ClassVar[int] = 9000
    root_user: ClassVar[str] = "infra-admin"

    @classmethod
    def start(cls) -> AwsLikeS3:
        assert os.access(_HOSTS, os.W_OK), f"{_HOSTS} must be writable (run the tests as root)"
        server, _ = cls._prepare()
        server.resolve(S3_DOMAIN)
        files = {
            "root-password": server.admin_password,
            "start.sh": "exec minio server /data --address :9000\n",
        }
        server._run(
            os.environ.get("MINIO_IMAGE") or "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
            files,
            [
                "--env", f"MINIO_ROOT_USER={cls.root_user}",
                "--env", "MINIO_ROOT_PASSWORD_FILE=/rds/root-password",
                "--env", f"MINIO_DOMAIN={S3_DOMAIN}",
                "--env", f"MINIO_SITE_REGION={S3_REGION}",
                "--env", "MINIO_BROWSER=off",
            ],
        )  # fmt: skip
        return server

    @property
    def endpoint(self) -> str:
        return f"http://{S3_DOMAIN}:{self.port}"

    def resolve(self, *names: str) -> None:
        """Make each of ``names`` (a bucket's host, say) resolve to 127.0.0.1."""
        lines = "".join(f"127.0.0.1 {name} {_HOSTS_MARK} {self.name}\n" for name in names)
        with _HOSTS.open("a") as hosts:
            hosts.write(lines)

    def _answers(self) -> bool:
        import http.client

        conn = http.client.HTTPConnection(S3_DOMAIN, self.port, timeout=2)
        try:
            conn.request("GET", "/minio/health/ready")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def env_lines(self, password_file: Path) -> str:
        return (
            f"S3_ENDPOINT={self.endpoint}\nS3_REGION={S3_REGION}\nS3_ADDRESSING=virtual\n"
            f"S3_ACCESS_KEY_ID={self.root_user}\nS3_SECRET_ACCESS_KEY_FILE={password_file}\n"
        )

    def stop(self) -> None:
        super().stop()
        kept = [
            line
            for line in _HOSTS.read_text().splitlines(keepends=True)
            if f"{_HOSTS_MARK} {self.name}" not in line
        ]
        _HOSTS.write_text("".join(kept))
