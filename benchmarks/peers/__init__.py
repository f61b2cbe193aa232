"""Peer job queues measured on actorq's workloads; see `benchmarks.compare`.

Each peer adapter module exposes ``w1``, ``w2``, ``w3`` and (for peers with flows) ``w4``,
taking ``(params, env, cfg)`` and returning one repetition's sample. Coroutine functions run
in a fresh ``asyncio`` loop per repetition; huey's are synchronous (thread consumer).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
    label: str
    module: str  # adapter module under benchmarks.peers
    cfg: object  # passed to the adapter: variant switch
    packages: tuple[str, ...]  # distributions that must be importable
    server: str = ""  # "", "redis", "redis-always", "postgres"
    durable: bool = False  # compared with actorq (fsync=always) instead of in-memory
    fairness: str = ""


PEERS: tuple[Peer, ...] = (
    Peer("actorq (memory)", "actorq_peer", False, ("actorq",),
         fairness="in-process, no persistence; W1 enqueue is one `add_bulk`; completion: "
         "`wait_until_finished`; results kept in memory."),
    Peer("actorq (fsync=always)", "actorq_peer", True, ("actorq",), durable=True,
         fairness="`Runtime(path=tmpdir, fsync=\"always\")`: every batch is fsynced before it "
         "is acknowledged; otherwise as in memory."),
    Peer("actorq (postgresql)", "actorq_peer", "postgresql", ("actorq", "psycopg"),
         server="postgres", durable=True,
         fairness="`Runtime(\"postgresql://...\", fsync=\"always\")` on the harness's server "
         "(PostgreSQL defaults: fsync, synchronous_commit on): every batch is one committed "
         "row before it is acknowledged; the tables are dropped before each repetition."),
    Peer("actorq (remote, 1 client)", "actorq_remote_peer", 1, ("actorq",), durable=True,
         fairness="a runtime host in its own process (`actorq serve PATH --listen`, journal "
         "at `fsync=\"always\"`) and this process as its client over loopback TCP: it adds "
         "(one `add_bulk`) and processes; completion polled with `counts()`."),
    Peer("actorq (remote, 3 clients)", "actorq_remote_peer", 3, ("actorq",), durable=True,
         fairness="as with 1 client, and two more client processes whose workers share the "
         "jobs (concurrency 50 in all)."),
    Peer("taskiq InMemoryBroker", "taskiq_peer", None, ("taskiq",),
         fairness="`InMemoryBroker(max_async_tasks=50)` (1 for W2); `kiq()` creates an "
         "asyncio task per message (no queue, no persistence); results in the in-memory "
         "backend (last 100); completion: middleware `post_save`; no delays (W3) or flows."),
    Peer("huey MemoryHuey", "huey_peer", "memory", ("huey",),
         fairness="thread consumer started in-process, 50 worker threads (1 for W2); "
         "empty-queue polling 1–10 ms (defaults 0.1–10 s); scheduler every 1 s (its "
         "minimum); results: huey stores none for a `None` return; completion: "
         "`SIGNAL_COMPLETE`; W1 enqueue one call per job (no bulk API); no flows."),
    Peer("huey SqliteHuey", "huey_peer", "sqlite", ("huey",), durable=True,
         fairness="as MemoryHuey, storage `SqliteHuey` in a temp file with huey's defaults "
         "(WAL journal, SQLite's default `synchronous`, huey `fsync=None`)."),
    Peer("arq", "arq_peer", None, ("arq",), server="redis",
         fairness="Redis defaults (RDB snapshots, no AOF); worker in-process, `max_jobs=50` "
         "(1 for W2); polls every 1 ms (`poll_delay`, default 0.5 s); results kept 1 h; "
         "completion: `after_job_end`; enqueue one `enqueue_job` per job; no flows."),
    Peer("arq (appendfsync always)", "arq_peer", None, ("arq",), server="redis-always",
         durable=True, fairness="as arq, Redis with AOF on and `appendfsync always`."),
    Peer("saq", "saq_peer", None, ("saq",), server="redis",
         fairness="Redis defaults; worker in-process, `concurrency=50` (1 for W2), blocking "
         "dequeue; delayed jobs moved by the 1 s `schedule` timer (default); results kept "
         "600 s; completion: `after_process`; one `enqueue` per job; no flows."),
    Peer("saq (appendfsync always)", "saq_peer", None, ("saq",), server="redis-always",
         durable=True, fairness="as saq, Redis with AOF on and `appendfsync always`."),
    Peer("bullmq", "bullmq_peer", None, ("bullmq",), server="redis",
         fairness="Redis defaults; `Worker(concurrency=50)` (1 for W2), blocking on the "
         "marker; jobs kept after completion; completion: worker `completed` event; W1 "
         "enqueue one `addBulk`; delays in integer ms; W4 via `FlowProducer.add`."),
    Peer("bullmq (appendfsync always)", "bullmq_peer", None, ("bullmq",),
         server="redis-always", durable=True,
         fairness="as bullmq, Redis with AOF on and `appendfsync always`."),
    Peer("procrastinate", "procrastinate_peer", None, ("procrastinate", "psycopg"),
         server="postgres", durable=True,
         fairness="PostgreSQL defaults (fsync, synchronous_commit on); worker in-process, "
         "`concurrency=50` (1 for W2), LISTEN/NOTIFY plus polling every 10 ms (default 5 s; "
         "`schedule_at` jobs are found by polling only); jobs kept; completion: "
         "the worker's `finish_job` returning (wrapped: no hook exists); W1 enqueue one "
         "`batch_defer_async`; no flows."),
)  # fmt: skip

BY_LABEL = {p.label: p for p in PEERS}
