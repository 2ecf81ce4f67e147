"""Soak: 10,000 connected tokens with 120 s access-token lifetimes kept fresh for 10 minutes by
the real beat schedule and two Celery worker processes on Redis, against a local provider
that answers in 50 ms and rotates refresh tokens with reuse detection.

Run from the repo root: ``.venv/bin/python benchmarks/soak.py`` (the issue's values; about 12
minutes with seeding). ``--tokens 1000 --minutes 3`` for a short run; ``--help`` for the rest.

What runs, each its own OS process:

* ``_soak_provider.py``: the token endpoint (``expires_in`` = ``--lifetime``, a new refresh
  token on every refresh, a spent one presented = 400 ``invalid_grant`` and the grant revoked);
* ``celery beat`` with the app's beat entry (``refresh_due_tokens``, ``fanout=True``) every
  ``--beat`` seconds (60, as docs/operations.md sets it up), ``expires`` the interval: each
  tick enqueues the rows due before the next one, each to run when it comes due;
* two ``celery worker`` processes, the layout of docs/operations.md: the first on the default
  queue and the refresh queue, the second on the refresh queue only; both ``--pool threads``
  (each refresh waits on the provider, not on the CPU: ``--concurrency`` threads cost one
  process's memory, and the fan-out's bursts need many slots at once);
* ``redis-cli monitor``, counting the Redis commands of the soak's Redis database.

And a reader thread here that samples random users' rows (``expires_at``, straight from the
table: it never refreshes) and, every few seconds, scans every active row for one expired.

The rows are seeded as a site in steady state has them: each one's interval drawn by the
app's own rule (``services.next_refresh_time``), its age uniform within that interval plus the
mean wait for a tick, then all shifted to "now" once the workers are up. The warm-up
(default: the longest interval, ``lifetime - lead``) is the time by which the real beat and
workers have refreshed every seeded token once, so the figures after it no longer depend on
how the seeding placed them.
"""

from __future__ import annotations

import os

# The soak's own database: its sweep refreshes every due row there, and it truncates the
# token and user tables when it seeds.
os.environ["FRAMEIO_BENCH_PGDATABASE"] = os.environ.get("FRAMEIO_SOAK_PGDATABASE", "frameio_soak")

import argparse
import contextlib
import json
import math
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from _setup import (
    BENCH_DIR,
    REPO_ROOT,
    LocalProvider,
    announced_port,
    median,
    percentile,
    print_machine,
    provider_settings,
    vacuum,
    verdict,
)
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import override_settings

from benchmarks import settings as bench_settings
from frameio_oauth import provider as app_provider
from frameio_oauth import services
from frameio_oauth.models import OAuthToken

DEFAULT_QUEUE = "frameio_soak_default"
REFRESH_QUEUE = "frameio_soak_refresh"
PREFIX = "soak"
LOAD_BUCKET = 10  # seconds
LOAD_TARGET = 1.3  # max bucket / mean bucket
FULL_SCAN_EVERY = 5.0  # seconds between the reader's scans of every active row
CLK_TCK = os.sysconf("SC_CLK_TCK")
# docs/benchmarks.md: at most 3 statements per refresh besides BEGIN (lock, update, commit).
STATEMENTS_TARGET = 3
# The 1,000,000-user estimate: production's beat interval and margin (docs/operations.md).
PROD_USERS = 1_000_000
# docs/benchmarks.md, "Keeping 1,000,000 users fresh": their hourly refreshes on 2 cores.
CPU_TARGET = 2 / (PROD_USERS / 3600)
PROD_BEAT = 60.0
PROD_MARGIN = 300.0
# Slots beyond the mean concurrency: for the measured peaks of provider load (each task runs
# when its row comes due, so load follows the schedule's jitter) and for retries.
HEADROOM = 1.5
# A row still due this long after its time at the end of the run counts as overdue: the tick
# sends it to run at its time, and the queue adds a few more.
SETTLED = 15.0
# Threads of one worker process share one GIL: plan each process at half a core at most.
CORE_PER_PROCESS = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000, help="connected users (10000)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run (10)")
    parser.add_argument("--lifetime", type=int, default=120, help="expires_in, seconds (120)")
    parser.add_argument("--delay", type=float, default=0.05, help="provider answer time (0.05)")
    parser.add_argument("--beat", type=float, default=60.0, help="beat interval, seconds (60)")
    parser.add_argument("--margin", type=int, default=20, help="REFRESH_MARGIN, seconds (20)")
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds (default: lifetime - lead)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--concurrency", type=int, default=16, help="threads per worker (16)")
    parser.add_argument(
        "--tick-worker",
        choices=("shared", "own"),
        default="shared",
        help="the tick on worker 1 beside its refresh threads (shared, docs/operations.md's "
        "layout) or on an extra solo-pool worker of its own (own)",
    )
    parser.add_argument(
        "--db-reuse-max",
        type=int,
        default=1000,
        help="CELERY_DB_REUSE_MAX, as docs/operations.md recommends (1000; 0: Celery's "
        "default, a new database connection per task)",
    )
    parser.add_argument("--reader-rate", type=int, default=100, help="rows sampled/s (100)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument(
        "--frameio-latency",
        default="0.15,0.3",
        help="Frame.io's token endpoint time for the 1,000,000-user estimate, s (0.15,0.3)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    return parser.parse_args()


# --- processes ------------------------------------------------------------------------------


class Processes:
    """Every process the soak starts, each in a session of its own (a Ctrl-C reaches only this
    one, which then stops them in order); stopped by process group, TERM then KILL."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen[Any]]] = []

    def start(
        self, name: str, argv: list[str], *, output: Path | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``argv``; ``output``: a file for its stdout and stderr."""
        fd = None
        if output is not None:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            kwargs.update(stdout=fd, stderr=subprocess.STDOUT)
        try:
            process: subprocess.Popen[Any] = subprocess.Popen(
                argv, start_new_session=True, **kwargs
            )
        finally:
            if fd is not None:
                os.close(fd)
        self.started.append((name, process))
        return process

    def stop(self, process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        # Anything the process left in its group (a prefork child, say).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            self.stop(process)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and of its waited-for children, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(value) for value in fields[11:15]) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --- the provider ---------------------------------------------------------------------------


class Provider(LocalProvider):
    def admin(self, path: str, body: bytes | None = None) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/admin/{path}"
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as answer:
            result: dict[str, Any] = json.loads(answer.read())
            return result


def start_provider(processes: Processes, args: argparse.Namespace) -> Provider:
    process = processes.start(
        "provider",
        [
            sys.executable,
            str(BENCH_DIR / "_soak_provider.py"),
            "--delay",
            str(args.delay),
            "--lifetime",
            str(args.lifetime),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    return Provider(process, announced_port(process))


# --- seeding --------------------------------------------------------------------------------


def seed(args: argparse.Namespace, provider: Provider, run_dir: Path) -> tuple[datetime, list[int]]:
    """Users and tokens as a site in steady state has them, at time t0 (returned with the
    users' ids). Bulk inserts of model instances: the field encrypts each secret as a save
    would, and a row needs nothing that store_grant adds beyond the columns set here (its
    provider, server, status and schedule); store_grant itself costs a locked transaction
    per user, minutes for 10,000."""
    user_model = get_user_model()
    with connection.cursor() as cursor:
        cursor.execute(
            f"TRUNCATE {OAuthToken._meta.db_table}, {user_model._meta.db_table} "
            "RESTART IDENTITY CASCADE"
        )
    users = user_model.objects.bulk_create(
        [user_model(username=f"{PREFIX}-{i}", password="!") for i in range(args.tokens)],
        batch_size=2000,
    )
    t0 = datetime.now(UTC)
    tokens = []
    refresh_tokens = []
    for user in users:
        # The app's own rule draws the interval (lead and jitter); the age is uniform over it,
        # as in a steady state where each row is refreshed when it comes due.
        interval = (services.next_refresh_time(t0, args.lifetime) - t0).total_seconds()
        issued = t0 - timedelta(seconds=random.uniform(0, interval))
        refresh_tokens.append(secrets.token_urlsafe(32))
        tokens.append(
            OAuthToken(
                user=user,
                provider="frameio",
                provider_user_id=f"{PREFIX}-fio-{user.pk}",
                provider_email=f"{PREFIX}-{user.pk}@frame.example",
                access_token=secrets.token_urlsafe(32),
                refresh_token=refresh_tokens[-1],
                scope="account.read offline",
                expires_at=issued + timedelta(seconds=args.lifetime),
                next_refresh_at=issued + timedelta(seconds=interval),
                last_refreshed_at=issued,
            )
        )
    created = OAuthToken.objects.bulk_create(tokens, batch_size=2000)
    seed_file = run_dir / "seed.txt"
    seed_file.write_text(
        "".join(
            f"{token.pk} {plain}\n" for token, plain in zip(created, refresh_tokens, strict=True)
        )
    )
    answer = provider.admin("seed", str(seed_file).encode())
    assert answer["seeded"] == len(created), answer
    seed_file.unlink()
    vacuum(OAuthToken._meta.db_table, user_model._meta.db_table)
    return t0, [user.pk for user in users]


def shift_to_now(t0: datetime) -> dict[int, tuple[float, float]]:
    """Move every row's times by (now - t0), so the steady state starts now; return each
    token's seeded (next_refresh_at, expires_at) as epoch seconds."""
    table = OAuthToken._meta.db_table
    delta = datetime.now(UTC) - t0
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET expires_at = expires_at + %s, "
            "next_refresh_at = next_refresh_at + %s, last_refreshed_at = last_refreshed_at + %s",
            [delta, delta, delta],
        )
    vacuum(table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, extract(epoch FROM next_refresh_at), extract(epoch FROM expires_at) "
            f"FROM {table}"
        )
        return {row[0]: (float(row[1]), float(row[2])) for row in cursor.fetchall()}


# --- the reader -----------------------------------------------------------------------------


@dataclass
class ReaderReport:
    samples: int = 0
    queries: int = 0
    expired_samples: int = 0
    expired_users: set[int] = field(default_factory=set)
    min_left: float = math.inf  # seconds of life left, the least any sample showed
    scans: int = 0
    expired_in_scans: int = 0  # summed over scans
    scan_min_left: float = math.inf
    not_active: int = 0  # rows not active at the last scan (reauth_required: grant lost)
    errors: list[str] = field(default_factory=list)


def reader(user_ids: list[int], rate: int, stop: threading.Event, report: ReaderReport) -> None:
    """Sample random users' rows all the time; never refresh. A separate connection
    (autocommit, psycopg directly), expiry compared with the database's clock."""
    import psycopg

    db = bench_settings.DATABASES["default"]
    table = OAuthToken._meta.db_table
    per_batch = max(1, rate // 10)
    sample_sql = (
        f"SELECT user_id, extract(epoch FROM expires_at - clock_timestamp()) FROM {table} "
        "WHERE user_id = ANY(%s) AND status = 'active'"
    )
    scan_sql = (
        "SELECT count(*) FILTER (WHERE status = 'active' AND expires_at <= clock_timestamp()), "
        "min(extract(epoch FROM expires_at - clock_timestamp())) "
        "FILTER (WHERE status = 'active'), count(*) FILTER (WHERE status <> 'active') "
        f"FROM {table}"
    )
    try:
        with psycopg.connect(
            host=str(db["HOST"]),
            port=str(db["PORT"]),
            user=str(db["USER"]),
            dbname=str(db["NAME"]),
            autocommit=True,
        ) as conn:
            next_scan = time.monotonic()
            while not stop.is_set():
                began = time.monotonic()
                for user_id, left in conn.execute(
                    sample_sql, [random.sample(user_ids, per_batch)]
                ).fetchall():
                    report.samples += 1
                    left = float(left)
                    report.min_left = min(report.min_left, left)
                    if left <= 0:
                        report.expired_samples += 1
                        report.expired_users.add(user_id)
                report.queries += 1
                if began >= next_scan:
                    expired, least, not_active = conn.execute(scan_sql).fetchone()  # type: ignore[misc]
                    report.scans += 1
                    report.expired_in_scans += expired
                    if least is not None:
                        report.scan_min_left = min(report.scan_min_left, float(least))
                    report.not_active = not_active
                    next_scan = began + FULL_SCAN_EVERY
                stop.wait(max(0.1 - (time.monotonic() - began), 0))
    except Exception as exc:  # reported, and the run goes on
        report.errors.append(repr(exc))


# --- Redis --------------------------------------------------------------------------------


class RedisMonitor:
    """``redis-cli monitor``, counting the commands of one Redis database per second and
    command. (INFO commandstats counts the whole server, which other clients share.)"""

    def __init__(self, processes: Processes, host: str, port: int, db: int) -> None:
        self.db = db
        self.counts: Counter[tuple[int, str]] = Counter()
        self.process = processes.start(
            "redis-cli monitor",
            ["redis-cli", "-h", host, "-p", str(port), "monitor"],
            stdout=subprocess.PIPE,
        )
        self.thread = threading.Thread(target=self._read, name="redis-monitor", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        prefix = f"[{self.db} ".encode()
        for line in self.process.stdout:
            # 1733000000.123456 [13 127.0.0.1:43210] "LPUSH" "queue" ...
            space = line.find(b" ")
            if space < 0 or not line.startswith(prefix, space + 1):
                continue
            quote = line.find(b'"', space)
            end = line.find(b'"', quote + 1)
            try:
                second = int(float(line[:space]))
            except ValueError:
                continue
            self.counts[(second, line[quote + 1 : end].decode(errors="replace").upper())] += 1

    def between(self, start: float, end: float) -> Counter[str]:
        window: Counter[str] = Counter()
        for (second, command), count in list(self.counts.items()):
            if start <= second < end:
                window[command] += count
        return window


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def redis_server_totals(client: Any) -> tuple[int, float]:
    """(commands, CPU seconds) of the whole Redis server so far."""
    stats = client.info("commandstats")
    cpu = client.info("cpu")
    calls = sum(int(value["calls"]) for value in stats.values())
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


# --- the Celery processes -------------------------------------------------------------------


def celery_env(
    args: argparse.Namespace, provider: Provider, run_dir: Path, role: str
) -> dict[str, str]:
    soak = {
        "token_url": provider.token_url,
        "margin": args.margin,
        "beat": args.beat,
        "redis_url": args.redis_url,
        "default_queue": DEFAULT_QUEUE,
        "refresh_queue": REFRESH_QUEUE,
        "db_reuse_max": args.db_reuse_max,
        "run_dir": str(run_dir),
    }
    env = dict(os.environ)
    env.update(
        {
            "FRAMEIO_SOAK_JSON": json.dumps(soak),
            "FRAMEIO_SOAK_ROLE": role,
            "DJANGO_SETTINGS_MODULE": "benchmarks._soak_settings",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    return env


def start_workers(
    processes: Processes, args: argparse.Namespace, provider: Provider, run_dir: Path
) -> list[subprocess.Popen[Any]]:
    """The worker processes: docs/operations.md's layout (the first one on the default queue
    too, for the tick), or with ``--tick-worker own`` an extra solo-pool worker on the default
    queue alone and every thread-pool worker on the refresh queue."""
    env = celery_env(args, provider, run_dir, "worker")
    layout = []
    for index in range(1, args.workers + 1):
        shared = index == 1 and args.tick_worker == "shared"
        queues = f"{DEFAULT_QUEUE},{REFRESH_QUEUE}" if shared else REFRESH_QUEUE
        layout.append((f"soak{index}", queues, ["--pool", "threads", "--concurrency"]))
    if args.tick_worker == "own":
        layout.append(("soak-tick", DEFAULT_QUEUE, ["--pool", "solo"]))
    workers = []
    for name, queues, pool in layout:
        if pool[-1] == "--concurrency":
            pool = [*pool, str(args.concurrency)]
        workers.append(
            processes.start(
                f"worker {name}",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "benchmarks._soak_celery",
                    "worker",
                    "-n",
                    f"{name}@%h",
                    "-Q",
                    queues,
                    *pool,
                    "--loglevel",
                    "WARNING",
                    "--logfile",
                    str(run_dir / f"{name}.log"),
                ],
                cwd=REPO_ROOT,
                env=env,
                output=run_dir / f"{name}.out",
            )
        )
    deadline = time.monotonic() + 120
    while len(list(run_dir.glob("ready-*"))) < len(workers):
        for worker in workers:
            if worker.poll() is not None:
                raise RuntimeError(f"a worker exited at start; see {run_dir}/soak*.log")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers did not get ready; see {run_dir}/soak*.log")
        time.sleep(0.2)
    return workers


def start_beat(
    processes: Processes, args: argparse.Namespace, provider: Provider, run_dir: Path
) -> subprocess.Popen[Any]:
    return processes.start(
        "beat",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks._soak_celery",
            "beat",
            "--schedule",
            str(run_dir / "beat-schedule"),
            "--loglevel",
            "WARNING",
            "--logfile",
            str(run_dir / "beat.log"),
        ],
        cwd=REPO_ROOT,
        env=celery_env(args, provider, run_dir, "beat"),
        output=run_dir / "beat.out",
    )


def send_previous_tick(args: argparse.Namespace) -> None:
    """The tick a running beat would have sent before the run: beat's first tick comes one
    interval after it starts, and the seeded rows are as a steady state has them."""
    from celery import Celery

    app = Celery("soak-tick", broker=args.redis_url)
    app.send_task(
        "frameio_oauth.tasks.refresh_due_tokens",
        kwargs={"fanout": True, "expires": float(args.beat)},
        queue=DEFAULT_QUEUE,
    )
    app.close()


def worker_counters(run_dir: Path) -> dict[str, Any]:
    """The workers' latest counters, summed: statements[task][kind], tasks[task][outcome],
    task_wall[task] and task_cpu[task] (seconds)."""
    statements: defaultdict[str, Counter[str]] = defaultdict(Counter)
    tasks: defaultdict[str, Counter[str]] = defaultdict(Counter)
    wall: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    for path in run_dir.glob("counters-*.json"):
        data = json.loads(path.read_text())
        for task, kinds in data["statements"].items():
            statements[task].update(kinds)
        for task, outcomes in data["tasks"].items():
            tasks[task].update(outcomes)
        for task, seconds in data["task_wall"].items():
            wall[task] += seconds
        for task, seconds in data["task_cpu"].items():
            cpu[task] += seconds
    return {"statements": statements, "tasks": tasks, "task_wall": wall, "task_cpu": cpu}


def counters_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    for key in ("statements", "tasks"):
        delta[key] = {
            task: after[key][task] - before[key].get(task, Counter()) for task in after[key]
        }
    for key in ("task_wall", "task_cpu"):
        delta[key] = after[key] - before[key]
    return delta


@dataclass
class Snapshot:
    at: float
    worker_cpu: list[float]
    beat_cpu: float
    provider_cpu: float
    machine: tuple[float, float]
    counters: dict[str, Any]
    provider: dict[str, Any]
    redis_server: tuple[int, float]


def snapshot(
    workers: list[subprocess.Popen[Any]],
    beat: subprocess.Popen[Any],
    provider: Provider,
    run_dir: Path,
    redis: Any,
) -> Snapshot:
    return Snapshot(
        at=time.time(),
        worker_cpu=[cpu_seconds(worker.pid) for worker in workers],
        beat_cpu=cpu_seconds(beat.pid),
        provider_cpu=cpu_seconds(provider.process.pid),
        machine=machine_busy(),
        counters=worker_counters(run_dir),
        provider=provider.admin("stats"),
        redis_server=redis_server_totals(redis),
    )


# --- the refresh log ------------------------------------------------------------------------


@dataclass
class Refresh:
    token_id: int
    refreshed_at: float  # last_refreshed_at: the provider's answer
    next_at: float
    expires_at: float
    started: float  # the task's start
    committed: float  # the signal, after the commit


@dataclass
class Tick:
    enqueued: int
    started: float
    wall: float
    cpu: float


def read_refresh_log(
    run_dir: Path,
) -> tuple[dict[int, list[Refresh]], list[Tick], Counter[str]]:
    by_token: defaultdict[int, list[Refresh]] = defaultdict(list)
    ticks: list[Tick] = []
    other: Counter[str] = Counter()
    for path in run_dir.glob("refreshed-*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if parts[0] == "tick":
                ticks.append(Tick(int(parts[1]), *(float(value) for value in parts[2:5])))
                continue
            if parts[0] != "ok":
                other[f"{parts[0]} ({parts[3]})"] += 1
                continue
            by_token[int(parts[1])].append(
                Refresh(int(parts[1]), *(float(value) for value in parts[2:7]))
            )
    for refreshes in by_token.values():
        refreshes.sort(key=lambda refresh: refresh.refreshed_at)
    return by_token, ticks, other


@dataclass
class Chain:
    """Each refresh set against what came before it: the schedule and the token it replaced."""

    lateness: list[tuple[float, float]] = field(default_factory=list)  # (at, seconds late)
    start_lateness: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    replaced_early: int = 0  # an access token replaced before half its lifetime
    after_expiry: int = 0  # refreshed only after the token it replaced had expired
    least_left: float = math.inf  # the least life the replaced token still had
    in_window: int = 0
    overdue_at_end: int = 0


def walk_chains(
    by_token: dict[int, list[Refresh]],
    seeded: dict[int, tuple[float, float]],
    lifetime: int,
    window: tuple[float, float],
    end: float,
    grace: float,
) -> Chain:
    chain = Chain()
    for token_id, (scheduled, expires) in seeded.items():
        issued = expires - lifetime
        for refresh in by_token.get(token_id, []):
            left = expires - refresh.committed
            chain.least_left = min(chain.least_left, left)
            if left <= 0:
                chain.after_expiry += 1
            if refresh.refreshed_at - issued < lifetime / 2:
                chain.replaced_early += 1
            if window[0] <= refresh.refreshed_at < window[1]:
                chain.in_window += 1
                chain.lateness.append((refresh.refreshed_at, refresh.refreshed_at - scheduled))
                chain.start_lateness.append(refresh.started - scheduled)
                chain.walls.append(refresh.committed - refresh.started)
            scheduled, expires, issued = refresh.next_at, refresh.expires_at, refresh.refreshed_at
        if scheduled < end - grace:
            chain.overdue_at_end += 1
    return chain


# --- the run --------------------------------------------------------------------------------


def run(args: argparse.Namespace, processes: Processes, run_dir: Path) -> None:
    lead, max_jitter = services.refresh_lead(args.lifetime, args.margin)
    warmup = args.warmup if args.warmup is not None else args.lifetime - lead
    duration = args.minutes * 60
    print_machine(
        f"soak: {args.tokens} tokens, {args.lifetime} s lifetimes, {args.minutes:g} min, "
        f"provider answering in {args.delay * 1000:.0f} ms"
    )
    print(f"load average at start: {Path('/proc/loadavg').read_text().strip()}")
    redis = redis_client(args.redis_url)
    redis_db = int(redis.connection_pool.connection_kwargs.get("db", 0))
    redis_host = redis.connection_pool.connection_kwargs.get("host", "127.0.0.1")
    redis_port = int(redis.connection_pool.connection_kwargs.get("port", 6379))
    print(f"redis: {redis.info('server')['redis_version']} at {args.redis_url} (flushed)")
    redis.flushdb()
    provider = start_provider(processes, args)
    print(f"provider: {provider.token_url} (rotating refresh tokens, reuse detection)")
    print(
        f"schedule: beat every {args.beat:g} s (fanout=True, expires {args.beat:g} s); "
        f"REFRESH_MARGIN {args.margin} s, so lead {lead:g} s and jitter U[0, {max_jitter:g}] s; "
        f"a token is due {args.lifetime - lead - max_jitter:g}-{args.lifetime - lead:g} s "
        f"after issue; each tick sends the rows due before the next one to run at their time, "
        f"so lateness (the queue's wait) must stay under the "
        f"{lead:g} s lead"
    )
    print(
        f"workers: {args.workers} x celery worker --pool threads --concurrency "
        f"{args.concurrency}"
        + (
            " (worker 1 also on the default queue, for the tick); "
            if args.tick_worker == "shared"
            else " on the refresh queue, and a --pool solo worker on the default queue; "
        )
        + (
            f"CELERY_DB_REUSE_MAX {args.db_reuse_max}"
            if args.db_reuse_max
            else "a database connection per task (Celery's Django fixup closes it around each)"
        )
    )
    print(
        f"warm-up {warmup:g} s"
        + (
            " (lifetime - lead: every seeded token refreshed once by the real workers)"
            if args.warmup is None
            else ""
        )
    )
    print()

    began = time.monotonic()
    with override_settings(
        FRAMEIO_OAUTH={
            **provider_settings(provider.token_url),
            "REFRESH_MARGIN": args.margin,
        }
    ):
        t0, user_ids = seed(args, provider, run_dir)
    print(f"seeded {len(user_ids)} users and tokens in {time.monotonic() - began:.1f} s")
    workers = start_workers(processes, args, provider, run_dir)
    seeded = shift_to_now(t0)
    monitor = RedisMonitor(processes, redis_host, redis_port, redis_db)
    stop_reader = threading.Event()
    reader_report = ReaderReport()
    reader_thread = threading.Thread(
        target=reader,
        args=(user_ids, args.reader_rate, stop_reader, reader_report),
        name="reader",
        daemon=True,
    )
    reader_thread.start()
    send_previous_tick(args)
    beat = start_beat(processes, args, provider, run_dir)
    start = time.time()
    print(f"beat and {len(workers)} workers running; measuring from {warmup:g} s to {duration:g} s")
    before: Snapshot | None = None
    next_report = start + 60
    while True:
        now = time.time()
        if before is None and now >= start + warmup:
            before = snapshot(workers, beat, provider, run_dir, redis)
        if now >= start + duration:
            break
        if now >= next_report:
            stats = provider.admin("stats")["counts"]
            print(
                f"  {now - start:5.0f} s: provider answered {stats.get('refreshed', 0)} "
                f"refreshes, {stats.get('reused', 0)} reuses; reader {reader_report.samples} "
                f"samples, {reader_report.expired_samples} expired; load {os.getloadavg()[0]:.2f}"
            )
            next_report += 60
        for name, process in processes.started:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited during the run; see {run_dir}")
        time.sleep(min(0.5, max(start + duration - now, 0.01)))
    after = snapshot(workers, beat, provider, run_dir, redis)
    assert before is not None
    end = after.at
    stop_reader.set()
    processes.stop(beat)
    reader_thread.join(timeout=10)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT status, count(*), count(*) FILTER (WHERE expires_at <= now()) "
            f"FROM {OAuthToken._meta.db_table} GROUP BY status"
        )
        statuses = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
    print(f"load average at end: {Path('/proc/loadavg').read_text().strip()}")
    print()
    report(
        args,
        run_dir,
        lead=lead,
        max_jitter=max_jitter,
        start=start,
        end=end,
        before=before,
        after=after,
        seeded=seeded,
        reader_report=reader_report,
        monitor=monitor,
        statuses=statuses,
    )


def report(
    args: argparse.Namespace,
    run_dir: Path,
    *,
    lead: float,
    max_jitter: float,
    start: float,
    end: float,
    before: Snapshot,
    after: Snapshot,
    seeded: dict[int, tuple[float, float]],
    reader_report: ReaderReport,
    monitor: RedisMonitor,
    statuses: dict[str, tuple[int, int]],
) -> None:
    lifetime = args.lifetime
    w0, w1 = before.at, after.at
    window = w1 - w0
    by_token, ticks, other = read_refresh_log(run_dir)
    chain = walk_chains(by_token, seeded, lifetime, (w0, w1), end, grace=SETTLED)
    total_refreshes = sum(len(refreshes) for refreshes in by_token.values())
    refreshes = chain.in_window
    counts_after = after.provider["counts"]
    counts_before = before.provider["counts"]

    def provider_delta(name: str) -> int:
        return int(counts_after.get(name, 0)) - int(counts_before.get(name, 0))

    print(f"== over the whole run ({end - start:.0f} s) ==")
    print(
        f"refreshes: {total_refreshes} (provider answered {counts_after.get('refreshed', 0)}); "
        f"other outcomes: {dict(other) or 'none'}; rows by status at the end: "
        + ", ".join(
            f"{status} {n} ({expired} expired)" for status, (n, expired) in statuses.items()
        )
    )
    print(
        f"reader: {reader_report.samples} samples in {reader_report.queries} queries, "
        f"{reader_report.expired_samples} expired ({len(reader_report.expired_users)} users), "
        f"least life left {reader_report.min_left:.1f} s; {reader_report.scans} scans of every "
        f"active row found {reader_report.expired_in_scans} expired, least life left "
        f"{reader_report.scan_min_left:.1f} s"
        + (f"; errors: {reader_report.errors}" if reader_report.errors else "")
    )
    print(
        f"refresh log: {chain.after_expiry} refreshes committed after the token they replaced "
        f"had expired; least life left at a refresh's commit {chain.least_left:.1f} s; "
        f"{chain.overdue_at_end} tokens overdue at the end (due more than "
        f"{SETTLED:g} s before it)"
    )
    print(
        f"provider: {counts_after.get('reused', 0)} spent refresh tokens presented (grant "
        f"revoked), {counts_after.get('unknown', 0)} unknown, "
        f"{counts_after.get('revoked_requests', 0)} for revoked grants; "
        f"{counts_after.get('connections', 0)} connections opened"
    )
    print()

    # Per-lifetime rate, lateness, load: the window after warm-up.
    per_lifetime = refreshes / args.tokens / (window / lifetime) if refreshes else 0.0
    late = sorted(seconds for _, seconds in chain.lateness)
    mean_late = sum(late) / len(late) if late else 0.0
    expected = lifetime / (lifetime - lead - max_jitter / 2 + mean_late)
    third = window / 3
    first = [s for at, s in chain.lateness if at < w0 + third]
    last = [s for at, s in chain.lateness if at >= w1 - third]
    per_second = {int(k): v for k, v in after.provider["per_second"].items()}
    buckets = []
    bucket_start = math.ceil(w0)
    while bucket_start + LOAD_BUCKET <= w1:
        buckets.append(
            sum(per_second.get(s, 0) for s in range(bucket_start, bucket_start + LOAD_BUCKET))
        )
        bucket_start += LOAD_BUCKET
    load_mean = sum(buckets) / len(buckets) if buckets else 0.0
    load_ratio = max(buckets) / load_mean if load_mean else math.inf
    seconds = [per_second.get(s, 0) for s in range(math.ceil(w0), math.floor(w1))]
    second_mean = sum(seconds) / len(seconds) if seconds else 0.0
    second_ratio = max(seconds) / second_mean if second_mean else math.inf
    busy_seconds = sum(1 for n in seconds if n) / len(seconds) if seconds else 0.0

    worker_cpu = sum(after.worker_cpu) - sum(before.worker_cpu)
    cpu_per_refresh = worker_cpu / refreshes if refreshes else math.nan
    delta = counters_delta(before.counters, after.counters)
    statements = delta["statements"]
    tasks = delta["tasks"]
    refresh_task = "frameio_oauth.tasks.refresh_token_if_due"
    tick_task = "frameio_oauth.tasks.refresh_due_tokens"
    refreshed_by_tasks = tasks.get(refresh_task, Counter()).get("refreshed", 0)
    # Statements of the tasks that refreshed; those that found their row locked or no longer
    # due (overlapping ticks) are counted apart.
    refresh_statements = statements.get(f"{refresh_task}:refreshed", Counter())
    idle_tasks = sum(
        n for outcome, n in tasks.get(refresh_task, Counter()).items() if outcome != "refreshed"
    )
    idle_statements = sum(
        sum(kinds.values())
        for key, kinds in statements.items()
        if key.startswith(f"{refresh_task}:") and key != f"{refresh_task}:refreshed"
    )
    tick_statements = statements.get(tick_task, Counter())
    enqueued = tasks.get(tick_task, Counter()).get("enqueued", 0)
    tick_count = tasks.get(tick_task, Counter()).get("SUCCESS", 0)

    def per(counter: Counter[str], divisor: int, *names: str) -> float:
        return sum(counter.get(name, 0) for name in names) / divisor if divisor else math.nan

    sql_kinds = [k for k in refresh_statements if k not in ("connect", "COMMIT", "ROLLBACK")]
    sql_per_refresh = per(refresh_statements, refreshed_by_tasks, *sql_kinds)
    ends_per_refresh = per(refresh_statements, refreshed_by_tasks, "COMMIT", "ROLLBACK")
    connects_per_refresh = per(refresh_statements, refreshed_by_tasks, "connect")
    tick_kinds = [k for k in tick_statements if k not in ("connect",)]
    tick_per_refresh = per(tick_statements, refreshed_by_tasks, *tick_kinds)
    # Round trips of a refresh: its SQL, COMMIT (or ROLLBACK), and the BEGIN psycopg sends
    # before each transaction's first statement.
    round_trips = sql_per_refresh + 2 * ends_per_refresh
    redis_window = monitor.between(w0, w1)
    redis_commands = sum(redis_window.values())
    redis_per_refresh = redis_commands / refreshes if refreshes else math.nan
    server_calls = after.redis_server[0] - before.redis_server[0]
    walls = sorted(chain.walls)
    overhead = (sum(walls) / len(walls) - args.delay) if walls else 0.0
    window_ticks = [tick for tick in ticks if w0 <= tick.started < w1]
    tick_tasks = sum(tick.enqueued for tick in window_ticks)
    # Per task enqueued, the tick's fixed part (a connection, the last page, the deferred
    # revocations' query, its result) included: small beside hundreds of tasks a tick.
    enqueue_wall = sum(tick.wall for tick in window_ticks) / tick_tasks if tick_tasks else 0.0
    enqueue_cpu = sum(tick.cpu for tick in window_ticks) / tick_tasks if tick_tasks else 0.0
    task_cpu = (
        delta["task_cpu"].get(refresh_task, 0.0) / refreshed_by_tasks if refreshed_by_tasks else 0.0
    )
    provider_connections = provider_delta("connections")
    busy = (after.machine[0] - before.machine[0]) / (after.machine[1] - before.machine[1])

    print(f"== after the warm-up: {window:.0f} s from {w0 - start:.0f} s ==")
    print(
        f"refreshes: {refreshes} ({refreshes / window:.1f}/s), by refresh_token_if_due "
        f"{refreshed_by_tasks}; refresh tasks by outcome "
        f"{dict(tasks.get(refresh_task, Counter()))}; {tick_count} ticks enqueued {enqueued} "
        f"({enqueued / refreshes if refreshes else 0:.2f} per refresh)"
    )
    print(
        f"machine: {busy * 100:.0f}% of {os.cpu_count()} cores busy (everything on it); "
        f"workers {worker_cpu / window * 100:.0f}% of a core, beat "
        f"{(after.beat_cpu - before.beat_cpu) / window * 100:.1f}%, provider "
        f"{(after.provider_cpu - before.provider_cpu) / window * 100:.0f}%, Redis server "
        f"{(after.redis_server[1] - before.redis_server[1]) / window * 100:.0f}% (all clients)"
    )
    print(
        f"refresh task wall, start to commit: median {median(walls) * 1000:.1f} ms, p99 "
        f"{percentile(walls, 0.99) * 1000:.1f} ms ({overhead * 1000:.1f} ms beyond the "
        f"provider's {args.delay * 1000:.0f} ms on average), its own thread's CPU "
        f"{task_cpu * 1000:.2f} ms; a tick: {enqueue_wall * 1000:.2f} ms of wall and "
        f"{enqueue_cpu * 1000:.2f} ms of its thread's CPU per task enqueued "
        f"({len(window_ticks)} ticks of {min((t.enqueued for t in window_ticks), default=0)}-"
        f"{max((t.enqueued for t in window_ticks), default=0)} tasks, longest "
        f"{max((t.wall for t in window_ticks), default=0):.2f} s)"
        if walls
        else "no refreshes in the window"
    )
    print(
        f"provider connections opened: {provider_connections} "
        f"({provider_connections / refreshes if refreshes else 0:.3f} per refresh; urllib3 keeps "
        f"{app_provider.POOL_SIZE} per worker process, its other calls open and drop one each)"
    )
    print()

    reuses = int(counts_after.get("reused", 0))
    lateness_ok = bool(late) and late[-1] < lead
    growing = bool(first and last) and median(last) > median(first) + 1.0
    lines = [
        (
            "tokens seen expired by the reader (target 0)",
            f"{len(reader_report.expired_users)} users in {reader_report.samples} samples; "
            f"{reader_report.expired_in_scans} in {reader_report.scans} full scans; "
            f"{chain.after_expiry} refreshes after expiry",
            not reader_report.expired_users
            and reader_report.expired_in_scans == 0
            and chain.after_expiry == 0
            and reader_report.samples > 0,
        ),
        (
            "refreshes per token per lifetime (target 1; a lead makes it L/(L - lead - jitter))",
            f"{per_lifetime:.3f}; the schedule's own L/(L - lead - mean jitter + mean lateness)"
            f" = {lifetime}/({lifetime} - {lead:g} - {max_jitter / 2:g} + {mean_late:.1f}) = "
            f"{expected:.3f}",
            per_lifetime <= 1.0,
        ),
        (
            "  ... against the schedule's own figure (within 3%)",
            f"{per_lifetime / expected:.3f} of it",
            abs(per_lifetime / expected - 1) <= 0.03,
        ),
        (
            "never 2 within one lifetime",
            f"{reuses} spent refresh tokens presented; {chain.replaced_early} access tokens "
            f"replaced before half their lifetime ({lifetime / 2:g} s)",
            reuses == 0 and chain.replaced_early == 0,
        ),
        (
            f"provider load per {LOAD_BUCKET} s bucket, max/mean (target <= {LOAD_TARGET})",
            f"{load_ratio:.2f} (mean {load_mean:.0f}, min {min(buckets, default=0)}, "
            f"max {max(buckets, default=0)}, {len(buckets)} buckets); per second: max/mean "
            f"{second_ratio:.1f}, {busy_seconds * 100:.0f}% of seconds with any request",
            load_ratio <= LOAD_TARGET,
        ),
        (
            f"lateness against next_refresh_at (max below the {lead:g} s lead)",
            f"p50 {percentile(late, 0.5):.2f} s, p99 {percentile(late, 0.99):.2f} s, "
            f"max {late[-1]:.2f} s; the task's start: p50 "
            f"{percentile(chain.start_lateness, 0.5):.2f} s, p99 "
            f"{percentile(chain.start_lateness, 0.99):.2f} s"
            if late
            else "none",
            lateness_ok,
        ),
        (
            "  ... not growing (median of the last third within 1 s of the first's)",
            f"first third {median(first):.2f} s, last third {median(last):.2f} s"
            if first and last
            else "too short a window",
            bool(first and last) and not growing,
        ),
        (
            f"CPU per refresh in the workers (docs' 1-2 cores for 278/s: <= "
            f"{CPU_TARGET * 1000:.1f} ms)",
            f"{cpu_per_refresh * 1000:.2f} ms (all their tasks, the ticks included, over "
            f"refreshes)",
            cpu_per_refresh <= CPU_TARGET,
        ),
        (
            f"PostgreSQL statements per refresh (<= {STATEMENTS_TARGET} besides BEGIN)",
            f"{sql_per_refresh + ends_per_refresh:.2f} ("
            + ", ".join(
                f"{kind} {refresh_statements[kind] / refreshed_by_tasks:.2f}"
                for kind in sorted(refresh_statements)
                if refreshed_by_tasks and kind != "connect"
            )
            + f"), {round_trips:.2f} round trips with BEGIN; {connects_per_refresh:.2f} new "
            f"connections per refresh; {idle_tasks} tasks that found their row locked or no "
            f"longer due, {idle_statements / refreshed_by_tasks if refreshed_by_tasks else 0:.3f} "
            f"more; the tick's paging {tick_per_refresh:.3f} more ("
            + ", ".join(
                f"{k} {tick_statements[k]}" for k in sorted(tick_statements) if k != "connect"
            )
            + f" in {tick_count} ticks)",
            sql_per_refresh + ends_per_refresh <= STATEMENTS_TARGET,
        ),
        (
            "Redis commands per refresh (no target; info)",
            f"{redis_per_refresh:.2f}, task messages published (LPUSH) "
            f"{redis_window.get('LPUSH', 0) / refreshes if refreshes else 0:.2f} ("
            + ", ".join(
                f"{command} {count / refreshes:.2f}"
                for command, count in redis_window.most_common(8)
            )
            + f"); the whole server counted {server_calls} commands, this database "
            f"{redis_commands}",
            None,
        ),
    ]
    for label, figure, ok in lines:
        mark = "info" if ok is None else verdict(bool(ok))
        print(f"{label}: {figure} -> {mark}")
    print()
    estimate(
        args,
        cpu_per_refresh=cpu_per_refresh,
        round_trips=round_trips + tick_per_refresh,
        connects=connects_per_refresh,
        redis_per_refresh=redis_per_refresh,
        overhead=overhead,
        enqueue_wall=enqueue_wall,
        enqueue_cpu=enqueue_cpu,
        lateness=mean_late,
        load_ratio=load_ratio,
    )


def estimate(
    args: argparse.Namespace,
    *,
    cpu_per_refresh: float,
    round_trips: float,
    connects: float,
    redis_per_refresh: float,
    overhead: float,
    enqueue_wall: float,
    enqueue_cpu: float,
    lateness: float,
    load_ratio: float,
) -> None:
    """1,000,000 users, from the figures measured above."""
    latencies = [float(value) for value in args.frameio_latency.split(",")]
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = int(cursor.fetchone()[0])
    pool = app_provider.POOL_SIZE
    cores_here = os.cpu_count() or 1
    print(
        f"== {PROD_USERS:,} users, from the figures above: beat every {PROD_BEAT:g} s with "
        f"fanout, REFRESH_MARGIN {PROD_MARGIN:g}, Frame.io answering in "
        f"{'-'.join(f'{v * 1000:.0f}' for v in latencies)} ms ==",
    )
    print(
        f"(slots: {HEADROOM:g} x rate x (latency + the {overhead * 1000:.0f} ms a refresh took "
        f"here beyond the provider), the mean concurrency with room for peaks and retries; worker "
        f"processes: at most {CORE_PER_PROCESS} core of Python each (one GIL), and no more "
        f"threads than the {pool} connections the app's HTTP pool keeps per process)"
    )
    for name, lifetime in (("V4, 24 h tokens", 86_400), ("legacy, 1 h tokens", 3_600)):
        lead, most_jitter = services.refresh_lead(lifetime, PROD_MARGIN)
        # A row is refreshed when it comes due plus the lateness measured here.
        interval = lifetime - lead - most_jitter / 2 + lateness
        rate = PROD_USERS / interval
        slots = [math.ceil(HEADROOM * rate * (lat + overhead)) for lat in latencies]
        cores = rate * cpu_per_refresh
        by_cpu = math.ceil(cores / CORE_PER_PROCESS)
        by_pool = math.ceil(slots[-1] / pool)
        processes = max(by_cpu, by_pool)
        per_tick = rate * PROD_BEAT
        print(
            f"{name}: {rate:.1f} refreshes/s ({lifetime / interval:.3f} per lifetime); "
            f"{slots[0]}-{slots[-1]} slots; worker CPU {cores:.2f} cores of this machine's; "
            f"{processes} worker processes of {math.ceil(slots[-1] / processes)} threads "
            f"({by_cpu} by CPU, {by_pool} by the HTTP pool)"
        )
        print(
            f"  PostgreSQL: {rate * round_trips:.0f} round trips/s, {rate:.0f} commits (WAL "
            f"flushes)/s, {rate * connects:.0f} new connections/s; {slots[0]}-{slots[-1]} "
            f"connections held, idle in transaction through each provider call (a pooler "
            f"cannot share them; max_connections here {max_connections})"
        )
        print(
            f"  Redis: {rate * redis_per_refresh:.0f} commands/s; the tick: {per_tick:.0f} tasks, "
            f"{per_tick * enqueue_cpu:.1f} s of CPU and {per_tick * enqueue_wall:.1f} s of wall "
            f"at this machine's contention, of its {PROD_BEAT:g} s (the tasks wait in the "
            f"workers for their eta); provider load per {LOAD_BUCKET} s: max/mean about "
            f"{load_ratio:.2f}, as measured here"
        )
        limits = {
            "PostgreSQL connections held through provider calls": slots[-1] / max_connections,
            "the tick's publishing (wall, of the beat interval)": per_tick
            * enqueue_wall
            / PROD_BEAT,
            f"worker CPU (of this machine's {cores_here} cores)": cores / cores_here,
        }
        ranked = sorted(limits.items(), key=lambda item: -item[1])
        print(
            f"  bound: {ranked[0][0]}, {ranked[0][1] * 100:.0f}% of it; then "
            + "; ".join(f"{name} {used * 100:.0f}%" for name, used in ranked[1:])
        )


def main() -> None:
    args = parse_args()
    # Ctrl-C raises KeyboardInterrupt even where the shell started this with SIGINT ignored
    # (a background job); TERM and HUP end the run the same way: the finally below stops
    # every process it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    run_dir = Path(tempfile.mkdtemp(prefix="frameio-soak-"))
    processes = Processes()
    try:
        run(args, processes, run_dir)
    finally:
        processes.stop_all()
        with contextlib.suppress(Exception):
            redis_client(args.redis_url).flushdb()
        if args.keep:
            print(f"run directory kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
