"""The soak benchmark's Celery app, and what its worker processes record.

``celery -A benchmarks._soak_celery worker|beat``, started by ``soak.py`` from the repository
root with ``FRAMEIO_SOAK_JSON`` set. The app is configured from Django settings
(``benchmarks._soak_settings``) as a project's would be, and runs the app's own tasks.

In a worker (``FRAMEIO_SOAK_ROLE=worker``) it also records, into files under the run's
directory (never into Redis, whose commands are being counted):

* ``refreshed-<pid>.log``: one line per ``token_refreshed`` signal: the token id, its
  ``last_refreshed_at``, new ``next_refresh_at`` and ``expires_at``, when the task that
  refreshed it started and when the signal went out (after the commit), all epoch seconds;
  ``refresh_failed`` and ``reauthorization_required`` add lines of their own, and each
  fan-out tick one with its count of tasks enqueued, its start, its wall and CPU time;
* ``counters-<pid>.json``, rewritten every second: SQL statements by task and kind (counted
  by an execute wrapper on every connection), COMMITs and ROLLBACKs, connections opened,
  tasks run by name and outcome, their summed wall time and thread CPU time, and tasks
  dropped unrun (expired);
* ``ready-<hostname>`` once the worker consumes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks._soak_settings")

import django
from celery import Celery, signals

django.setup()

app = Celery("frameio_soak")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.set_default()

RUN_DIR = Path(json.loads(os.environ["FRAMEIO_SOAK_JSON"])["run_dir"])
IS_WORKER = os.environ.get("FRAMEIO_SOAK_ROLE") == "worker"

_local = threading.local()
_lock = threading.Lock()
_statements: defaultdict[str, Counter[str]] = defaultdict(Counter)
_tasks: defaultdict[str, Counter[str]] = defaultdict(Counter)
_task_wall: defaultdict[str, float] = defaultdict(float)
_task_cpu: defaultdict[str, float] = defaultdict(float)  # the task's own thread (thread_time)
_log_fd: int | None = None


def _task() -> str:
    return getattr(_local, "task", None) or "outside tasks"


def _count(kind: str) -> None:
    running: Counter[str] | None = getattr(_local, "statements", None)
    if running is not None:
        running[kind] += 1  # merged at the task's end, by task and by outcome
        return
    with _lock:
        _statements[_task()][kind] += 1


def _kind(sql: str) -> str:
    head = sql.lstrip()[:12].upper()
    if head.startswith("SELECT"):
        for mode in ("SKIP LOCKED", "NOWAIT"):
            if mode in sql:
                return f"SELECT FOR UPDATE {mode}"
        return "SELECT FOR UPDATE" if "FOR UPDATE" in sql else "SELECT"
    if head.startswith("SET LOCAL"):
        return "SET LOCAL"
    return head.split(" ", 1)[0] or "other"


def _execute_wrapper(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
) -> Any:
    _count(_kind(sql))
    return execute(sql, params, many, context)


def _connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    _count("connect")
    if _execute_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(_execute_wrapper)


def _patch_transactions() -> None:
    """Count COMMITs and ROLLBACKs; psycopg sends BEGIN by itself before a transaction's first
    statement, so each of those is one BEGIN round trip too."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    commit = getattr(DatabaseWrapper, "_commit")  # noqa: B009 (private: not in the stubs)
    rollback = getattr(DatabaseWrapper, "_rollback")  # noqa: B009

    def counted_commit(self: Any) -> Any:
        if self.connection is not None:
            _count("COMMIT")
        return commit(self)

    def counted_rollback(self: Any) -> Any:
        if self.connection is not None:
            _count("ROLLBACK")
        return rollback(self)

    setattr(DatabaseWrapper, "_commit", counted_commit)  # noqa: B010
    setattr(DatabaseWrapper, "_rollback", counted_rollback)  # noqa: B010


def _write_line(text: str) -> None:
    global _log_fd
    if _log_fd is None:
        path = RUN_DIR / f"refreshed-{os.getpid()}.log"
        _log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(_log_fd, text.encode())  # one write per line: O_APPEND keeps lines whole


def _on_refreshed(sender: Any, token: Any, rotated: bool, **kwargs: Any) -> None:
    # Sent after the commit: "now" is when the new tokens became visible.
    started = getattr(_local, "started", 0.0)
    _write_line(
        f"ok {token.pk} {token.last_refreshed_at.timestamp():.6f} "
        f"{token.next_refresh_at.timestamp() if token.next_refresh_at else 0:.6f} "
        f"{token.expires_at.timestamp():.6f} {started:.6f} {time.time():.6f} {int(rotated)}\n"
    )


def _on_failed(sender: Any, token: Any, error: Any, **kwargs: Any) -> None:
    _write_line(f"failed {token.pk} {time.time():.6f} {type(error).__name__}\n")


def _on_reauth(sender: Any, token: Any, error: Any, **kwargs: Any) -> None:
    _write_line(f"reauth {token.pk} {time.time():.6f} {type(error).__name__}\n")


def _task_prerun(task: Any = None, **kwargs: Any) -> None:
    _local.task = task.name if task is not None else "unknown task"
    _local.statements = Counter()
    _local.started = time.time()
    _local.cpu = time.thread_time()


def _task_postrun(task: Any = None, retval: Any = None, state: Any = None, **kwargs: Any) -> None:
    name = task.name if task is not None else "unknown task"
    outcome = retval if isinstance(retval, str) else str(state)
    started = getattr(_local, "started", time.time())
    wall = time.time() - started
    cpu = time.thread_time() - getattr(_local, "cpu", time.thread_time())
    if isinstance(retval, dict) and "enqueued" in retval:
        _write_line(f"tick {retval['enqueued']} {started:.6f} {wall:.6f} {cpu:.6f}\n")
    ran: Counter[str] = getattr(_local, "statements", None) or Counter()
    _local.statements = None
    with _lock:
        _statements[name].update(ran)
        # The refresh's own statements, apart from tasks that found nothing to do.
        _statements[f"{name}:{outcome}"].update(ran)
        _tasks[name][outcome] += 1
        if isinstance(retval, dict) and "enqueued" in retval:
            _tasks[name]["enqueued"] += retval["enqueued"]
        _task_wall[name] += wall
        _task_cpu[name] += cpu
    _local.task = None


def _task_revoked(sender: Any = None, expired: bool = False, **kwargs: Any) -> None:
    name = getattr(sender, "name", None) or "unknown task"
    with _lock:
        _tasks[str(name)]["expired unrun" if expired else "revoked"] += 1


def _snapshot() -> dict[str, Any]:
    with _lock:
        return {
            "time": time.time(),
            "statements": {task: dict(kinds) for task, kinds in _statements.items()},
            "tasks": {task: dict(outcomes) for task, outcomes in _tasks.items()},
            "task_wall": dict(_task_wall),
            "task_cpu": dict(_task_cpu),
        }


def _write_counters_forever() -> None:
    path = RUN_DIR / f"counters-{os.getpid()}.json"
    scratch = path.with_suffix(".tmp")
    while True:
        scratch.write_text(json.dumps(_snapshot()))
        scratch.replace(path)
        time.sleep(1.0)


def _worker_ready(sender: Any = None, **kwargs: Any) -> None:
    threading.Thread(target=_write_counters_forever, name="soak-counters", daemon=True).start()
    hostname = getattr(sender, "hostname", None) or str(os.getpid())
    (RUN_DIR / f"ready-{hostname}").write_text(str(os.getpid()))


if IS_WORKER:
    from django.db.backends.signals import connection_created

    from frameio_oauth import signals as frameio_signals

    _patch_transactions()
    connection_created.connect(_connection_created, weak=False)
    frameio_signals.token_refreshed.connect(_on_refreshed, weak=False)
    frameio_signals.refresh_failed.connect(_on_failed, weak=False)
    frameio_signals.reauthorization_required.connect(_on_reauth, weak=False)
    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)
    signals.task_revoked.connect(_task_revoked, weak=False)
    signals.worker_ready.connect(_worker_ready, weak=False)
