"""The Redis store behind Redis Sentinel: URL form, the shared limiter, and a real failover.

Real processes only: a master ``redis-server``, a replica, and Sentinels (``redis-server
sentinel.conf --sentinel``), each on a free port, stopped by PID.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from gateway.errors import ConfigError, StoreError
from gateway.ratelimit.gcra import Rate, RateRule
from gateway.ratelimit.redis_limiter import RedisLimiter
from gateway.redisio.sentinel import SCHEMES, SentinelURL, parse_sentinel_url
from gateway.store import Attempt, open_store
from gateway.store.redis import RedisStore
from gateway.store.urls import SCHEMES as STORE_SCHEMES
from harness.redis_server import RedisServer, free_port
from tests.store.conftest import T0, make_event, one_store_wakes_another
from tests.support import build_config, config_dict
from tests.waiting import eventually, eventually_sync

SERVICE = "wgmaster"
# Sentinel's own pace: the master counts as down after this long without an answer.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
# Bounded waits; a healthy run needs a fraction of each.
PROMOTION_WAIT = 20.0
SYNC_WAIT = 10.0
EVENT_KEY = "wg:{q}:id:evt_before"


def command(host: str, port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command (RESP array) and return the raw reply, for readiness checks only."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        payload += f"${len(arg.encode())}\r\n{arg}\r\n".encode()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.settimeout(timeout)
        return sock.recv(65536)


#: What a check of a Redis process may raise before it answers: "not yet", not a failure.
UNANSWERED = (
    OSError,  # a process not listening yet, or just killed
    ValueError,  # a reply cut short or an error reply: ask again
    IndexError,
)


class SentinelServer(RedisServer):
    """One Redis Sentinel watching ``master`` as service ``SERVICE``, quorum 1."""

    def __init__(self, master: RedisServer, master_password: str | None = None) -> None:
        super().__init__()
        self.master_host, self.master_port = master.host, master.port
        self.master_password = master_password

    def argv(self) -> list[str]:
        """Write sentinel.conf for the chosen port and run ``redis-server <conf> --sentinel``."""
        # Sentinel rewrites its config file (it records what it learns), so each start gets a
        # fresh one in the server's own directory.
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\n"
            f"bind {self.host}\n"
            f"dir {self.dir}\n"
            f"logfile {self.log_path}\n"
            "protected-mode no\n"
            f"sentinel monitor {SERVICE} {self.master_host} {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        if self.master_password is not None:
            with conf.open("a") as file:
                file.write(f"sentinel auth-pass {SERVICE} {self.master_password}\n")
        return [self.executable, str(conf), "--sentinel"]

    def master_addr(self) -> tuple[str, int] | None:
        """What ``SENTINEL get-master-addr-by-name`` says, if anything."""
        reply = command(self.host, self.port, "SENTINEL", "get-master-addr-by-name", SERVICE)
        lines = reply.split(b"\r\n")
        if not reply.startswith(b"*2"):
            return None
        return lines[2].decode(), int(lines[4])

    def master_flags(self) -> bytes:
        """The ``flags`` field of ``SENTINEL master`` (``master`` when healthy)."""
        reply = command(self.host, self.port, "SENTINEL", "master", SERVICE)
        lines = reply.split(b"\r\n")
        return lines[lines.index(b"flags") + 2]

    def reports(self, port: int) -> bool:
        """Whether this Sentinel names the master on ``port`` and sees it healthy.

        redis-py refuses a master Sentinel flags as down, so both must hold for clients.
        """
        return self.master_addr() == ("127.0.0.1", port) and self.master_flags() == b"master"


def sentinel_url(*sentinels: SentinelServer, db: int = 0) -> str:
    """The store URL naming these Sentinels and the test service."""
    hosts = ",".join(f"{s.host}:{s.port}" for s in sentinels)
    return f"redis+sentinel://{hosts}/{SERVICE}/{db}"


@pytest.fixture
def master() -> Iterator[RedisServer]:
    """A master with the append-only file on, as the store's durability note asks."""
    server = RedisServer(appendonly=True)
    server.start()
    yield server
    server.close()


def start_sentinel(master: RedisServer, master_password: str | None = None) -> SentinelServer:
    """A Sentinel that already reports ``master``."""
    sentinel = SentinelServer(master, master_password)
    sentinel.start()
    try:
        eventually_sync(
            lambda: sentinel.reports(master.port),
            "the Sentinel's master",
            timeout=SYNC_WAIT,
            ignoring=UNANSWERED,
        )
    except BaseException:
        sentinel.close()
        raise
    return sentinel


@pytest.fixture
def sentinels(master: RedisServer) -> Iterator[list[SentinelServer]]:
    """Two Sentinels watching the master."""
    started: list[SentinelServer] = []
    try:
        for _ in range(2):
            started.append(start_sentinel(master))
        yield started
    finally:
        for sentinel in started:
            sentinel.close()


# -- the URL -----------------------------------------------------------------------------------


def test_url_names_sentinels_service_db_and_credentials():
    parsed = parse_sentinel_url(
        "rediss+sentinel://app:s%3Acret@10.0.0.1:26380,sentinel-b,[::1]:26381/pay%2Dmaster/3"
        "?sentinel_password=sp&sentinel_username=su&sentinel_tls=yes&ssl_ca_certs=/ca.pem"
    )
    assert parsed == SentinelURL(
        sentinels=(("10.0.0.1", 26380), ("sentinel-b", 26379), ("::1", 26381)),
        service_name="pay-master",
        db=3,
        username="app",
        password="s:cret",
        tls=True,
        sentinel_username="su",
        sentinel_password="sp",
        sentinel_tls=True,
        ssl_ca_certs="/ca.pem",
    )
    assert "s:cret" not in repr(parsed) and "password" not in repr(parsed)
    plain = parse_sentinel_url("redis+sentinel://:pw@h/mymaster")
    assert (plain.db, plain.username, plain.password, plain.tls) == (0, None, "pw", False)
    assert plain.sentinel_tls is False


def test_the_parser_takes_the_sentinel_schemes_of_the_store_url_table():
    # The Redis plumbing does not import the store, so it names the schemes itself: the same.
    assert tuple(s for s, kind in STORE_SCHEMES.items() if kind == "sentinel") == SCHEMES


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h1:26379,h2:26379", "name the Sentinel service"),
        ("redis+sentinel://h1:26379/", "name the Sentinel service"),
        ("redis+sentinel:///mymaster", "list one or more Sentinels"),
        ("redis+sentinel://h1,,h2/mymaster", "list one or more Sentinels"),
        ("redis+sentinel://h1:port/mymaster", "is not a number from 1 to 65535"),
        ("redis+sentinel://h1:70000/mymaster", "is not a number from 1 to 65535"),
        ("redis+sentinel://::1/mymaster", "in brackets"),
        ("redis+sentinel://h1/mymaster/zero", "database 'zero' is not a number"),
        ("redis+sentinel://h1/mymaster/0/extra", "nothing more"),
        ("redis+sentinel://h1/mymaster?password=x", "unknown Sentinel URL option 'password'"),
        ("redis+sentinel://h1/mymaster?sentinel_tls=maybe", "sentinel_tls is yes or no"),
        (
            "redis+sentinel://h1/mymaster?sentinel_password=a&sentinel_password=b",
            "given twice",
        ),
    ],
)
async def test_malformed_urls_are_refused_by_the_store_and_the_config(url: str, message: str):
    with pytest.raises(StoreError, match=r"store\.url: bad Redis Sentinel URL") as info:
        await open_store(url)
    assert message in str(info.value)

    with pytest.raises(ConfigError) as config_info:
        build_config(config_dict("http://127.0.0.1:8000/hook", store_url=url))
    problems = [str(p) for p in config_info.value.problems]
    assert any(p.startswith("store.url: bad Redis Sentinel URL") and message in p for p in problems)


def test_config_accepts_a_sentinel_url_and_never_quotes_a_password_in_an_error():
    env = {"REDIS_PASSWORD": "hunter2"}
    url = "redis+sentinel://:${REDIS_PASSWORD}@s1:26379,s2:26379/mymaster/0"
    config = build_config(config_dict("http://127.0.0.1:8000/hook", store_url=url), env)
    assert config.store.url == "redis+sentinel://:hunter2@s1:26379,s2:26379/mymaster/0"
    assert "hunter2" not in str(config.redacted)

    no_service = "redis+sentinel://:${REDIS_PASSWORD}@s1:26379,s2:26379"
    with pytest.raises(ConfigError) as info:
        build_config(config_dict("http://127.0.0.1:8000/hook", store_url=no_service), env)
    assert "store.url: bad Redis Sentinel URL" in str(info.value)
    assert "hunter2" not in str(info.value)


# -- through live Sentinels --------------------------------------------------------------------


async def test_store_and_limiter_work_through_the_sentinels(
    master: RedisServer, sentinels: list[SentinelServer]
):
    # An unreachable Sentinel listed first is skipped (discovery asks the next one).
    dead = f"127.0.0.1:{free_port()},"
    store = await open_store(sentinel_url(*sentinels, db=2).replace("://", f"://{dead}", 1))
    try:
        assert isinstance(store, RedisStore)
        await store.ping()
        first = await store.accept(make_event("evt_1"), ["marketplace"], 3600, T0)
        assert (first.status, first.event_id) == ("queued", "evt_1")
        again = await store.accept(make_event("evt_1"), ["marketplace"], 3600, T0 + 1)
        assert again.status == "duplicate"
        (lease,) = await store.lease_due(T0 + 2, 30, 10, "w1")
        assert lease.event.id == "evt_1" and lease.event.body == make_event().body
        assert await store.complete(lease, Attempt(1, T0 + 3, 200, 0.01))
        view = await store.get_event("evt_1", "payments")
        assert view is not None and view.status == "delivered"

        # The data is on the master the Sentinels name, in the database the URL names.
        direct = aioredis.Redis.from_url(f"redis://127.0.0.1:{master.port}/2")
        try:
            assert await direct.exists("wg:{q}:id:evt_1") == 1
        finally:
            await direct.aclose()

        # The limiter shares the store's client (gateway.app does just this).
        limiter = RedisLimiter(store.client, clock="caller")
        rule = RateRule(rate=Rate.parse("1/s"), burst=2)
        verdicts = [(await limiter.hit("ip:1", rule, T0)).allowed for _ in range(3)]
        assert verdicts == [True, True, False]
    finally:
        await store.close()


async def test_an_unknown_service_is_a_store_error_on_use(sentinels: list[SentinelServer]):
    store = await open_store(sentinel_url(*sentinels).replace(SERVICE, "nosuchservice"))
    try:
        with pytest.raises(StoreError, match="nosuchservice"):
            await store.ping()
    finally:
        await store.close()


@pytest.mark.cluster  # starts its own, without a fixture
async def test_passwords_go_to_the_master_and_to_the_sentinels(master: RedisServer):
    command(master.host, master.port, "CONFIG", "SET", "requirepass", "master-pw")
    sentinel = start_sentinel(master, master_password="master-pw")
    try:
        # Protect the Sentinel only now: the readiness checks above speak without AUTH.
        acl = ("ACL", "SETUSER", "default", "resetpass", ">sentinel-pw")
        assert command(sentinel.host, sentinel.port, *acl) == b"+OK\r\n"
        base = sentinel_url(sentinel).replace("://", "://:master-pw@", 1)

        good = await open_store(f"{base}?sentinel_password=sentinel-pw")
        try:
            await good.ping()
            assert (await good.accept(make_event(), ["marketplace"], 60, T0)).status == "queued"
        finally:
            await good.close()
        for url in (base, base.replace("master-pw", "wrong") + "?sentinel_password=sentinel-pw"):
            store = await open_store(url)
            try:
                with pytest.raises(StoreError):
                    await store.ping()
            finally:
                await store.close()
    finally:
        sentinel.close()


@pytest.mark.cluster  # starts its own, without a fixture
async def test_failover_to_the_replica_keeps_the_same_store_working(master: RedisServer):
    replica = RedisServer(extra_args=["--replicaof", master.host, str(master.port)])
    replica.start()
    try:
        eventually_sync(
            lambda: _linked(replica), "the replica to sync", timeout=SYNC_WAIT, ignoring=UNANSWERED
        )
        # Started after the replica, the Sentinel learns of it from its first INFO to the
        # master, rather than up to 10 s later.
        sentinel = start_sentinel(master)
        try:
            await _fail_over(master, replica, sentinel)
        finally:
            sentinel.close()
    finally:
        replica.close()


async def _fail_over(master: RedisServer, replica: RedisServer, sentinel: SentinelServer) -> None:
    eventually_sync(
        lambda: _knows_replica(sentinel, replica.port),
        "replica discovery",
        timeout=SYNC_WAIT,
        ignoring=UNANSWERED,
    )
    store = await open_store(sentinel_url(sentinel))
    assert isinstance(store, RedisStore)
    try:
        before = await store.accept(make_event("evt_before"), ["marketplace"], 3600, T0)
        assert before.status == "queued"
        # No WAIT in the store (replication is asynchronous): wait for the replica to have it.
        # From here on the waits keep the event loop running, as it always runs in a gateway:
        # the store's idle connections then see the old master close them (EOF) and the pool
        # replaces them before their next use, as in production, not after a frozen loop.
        await eventually(
            lambda: command(replica.host, replica.port, "EXISTS", EVENT_KEY) == b":1\r\n",
            "the event on the replica",
            timeout=SYNC_WAIT,
            ignoring=UNANSWERED,
        )

        master.kill()
        await eventually(
            lambda: sentinel.reports(replica.port),
            "promotion",
            timeout=PROMOTION_WAIT,
            ignoring=UNANSWERED,
        )

        # The same store object: its next connection asks the Sentinel, finds the new master.
        after = await store.accept(make_event("evt_after"), ["marketplace"], 3600, T0 + 5)
        assert after.status == "queued"
        old = await store.get_event("evt_before", "payments")
        assert old is not None and old.status == "queued"
        assert old.event.body == make_event().body
        duplicate = await store.accept(make_event("evt_before"), ["marketplace"], 3600, T0 + 6)
        assert duplicate.status == "duplicate"
        leased = sorted(lease.event.id for lease in await store.lease_due(T0 + 7, 30, 10, "w"))
        assert leased == ["evt_after", "evt_before"]
        # The limiter, on the store's client, follows the failover too.
        rule = RateRule(rate=Rate.parse("1/s"), burst=1)
        assert (await RedisLimiter(store.client).hit("ip:after", rule, T0)).allowed
        assert command(replica.host, replica.port, "ROLE").startswith(b"*3\r\n$6\r\nmaster")
    finally:
        await store.close()


def _linked(replica: RedisServer) -> bool:
    return b"master_link_status:up" in command(replica.host, replica.port, "INFO", "replication")


def _knows_replica(sentinel: SentinelServer, port: int) -> bool:
    reply = command(sentinel.host, sentinel.port, "SENTINEL", "replicas", SERVICE)
    return f"127.0.0.1:{port}".encode() in reply


async def test_an_announcement_through_the_sentinels_wakes_another_store(
    sentinels: list[SentinelServer],
):
    """Wake-ups ride the master the Sentinels name, as the store's scripts do."""
    await one_store_wakes_another(sentinel_url(*sentinels, db=3))
