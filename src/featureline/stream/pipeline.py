"""The streaming job, built from the compiled plan: Kafka -> contract -> tiles in Redis.

    ReadFromKafkaPartitions      one splittable DoFn per topic-partition; a poll is one element
    | "Apply" ParDo(ApplyBatch)  decode, check, dedupe, filter, aggregate, merge into Redis
    | "Commit" ParDo             one Kafka transaction: dead letters to <topic>.dlq and the
                                 next offset to the consumer group; then metrics

The steps are one fused stage, so each micro-batch goes through them in order before
the next: an offset is committed only after Redis acknowledged its records' effects,
atomically with its dead letters (docs/semantics.md, Delivery). Helper processes take the pure-Python
Kafka work off this one: a reader per partition (decoding + contract check, reader_proc.py)
and one for the Kafka transactions (deliver_proc.py); see docs/stream.md, "Processes". Aggregation state lives in Redis,
none in Beam, so the same pipeline runs on FnApiRunner here and on Flink or Dataflow.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace

from ..plan import Plan

DEFAULT_RUNNER = "FnApiRunner"

# the metrics of the job running in this process (FnApiRunner runs the DoFns in-process)
_METRICS: dict[str, object] = {}
# its Kafka transaction processes: run() waits for their last commits when the pipeline is done
_DELIVERS: dict[str, list] = {}
# the one run() started and fenced, until the Commit DoFn takes it (in-process runner)
_FENCED: dict[str, object] = {}


@dataclass
class StreamOptions:
    until_caught_up: bool = False
    runner: str = DEFAULT_RUNNER
    beam_args: list[str] = field(default_factory=list)
    from_us: int | None = None  # boundary override; default: what `backfill --to online` recorded
    start: str = "earliest"  # where a partition without a committed offset starts
    # records per micro-batch at most (a poll returns what was fetched, up to this); default: 50,000
    # when catching up (big batches amortize merges and transactions), 5,000 live (freshness)
    max_poll_records: int | None = None

    @property
    def batch_limit(self) -> int:
        if self.max_poll_records is not None:
            return self.max_poll_records
        return 50_000 if self.until_caught_up else 5_000

    poll_timeout_ms: int = 200
    report_every_s: float = 5.0
    metrics_port: int | None = None
    sources: tuple[str, ...] = ()  # default: every source with a stream side
    # live mode: look for partitions added to the topics every this many seconds (0: never)
    discover_every_s: float = 30.0
    # reader processes per partition; None: 2 when the job has fewer partitions than this
    # machine has cores (FnApiRunner), else 1 (see reader_proc.StripedReader)
    readers_per_partition: int | None = None
    run_id: str = "main"
    quiet: bool = False
    # records deleted before the stream read them (retention): False stops the job naming the
    # partition and the gap; True goes on after them and counts them as lost
    skip_lost: bool = False


def stream_sources(plan: Plan, names=()) -> dict[str, str]:
    """topic -> source name, for the sources the stream runs."""
    out = {}
    for s in plan.sources.values():
        if s.stream is None or (names and s.name not in names):
            continue
        if not any(v.source == s.name and v.online for v in plan.views.values()):
            continue
        out[s.stream.topic] = s.name
    if names:
        missing = [n for n in names if n not in out.values()]
        if missing:
            raise ValueError(f"no stream source feeding an online view: {', '.join(missing)}")
    return out


def start_epochs(plan: Plan, store, topics: dict[str, str], epochs: dict[str, str]) -> dict[str, dict]:
    """A source backfilled to online since this consumer group last ran (a new epoch) is re-read from the beginning of its topic: the backfill replaced
    what the stream had applied, and every event at or after the boundary must be applied
    again. Its bad records are not dead-lettered twice: below the offsets the group had
    reached, they were sent before. Returns, per source, those offsets per partition."""
    import json

    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    from .sinks import kafka_config

    group = plan.project.kafka_consumer_group
    out: dict[str, dict] = {}
    consumer = None
    try:
        for topic, source in topics.items():
            b = epochs.get(source)
            if not b:
                continue
            key = f"stream_epoch:{group}:{source}"
            raw = store.get_record(key)
            prev = json.loads(raw) if raw else None
            if prev is not None and prev["epoch"] == b:
                out[source] = {int(p): o for p, o in prev["dlq_from"].items()}
                continue
            if consumer is None:
                cfg = kafka_config(plan)
                consumer = KafkaConsumer(
                    group_id=group, enable_auto_commit=False, **{k: v for k, v in cfg.items() if k in KafkaConsumer.DEFAULT_CONFIG}
                )
            parts = sorted(consumer.partitions_for_topic(topic) or ())
            tps = [TopicPartition(topic, p) for p in parts]
            begin = consumer.beginning_offsets(tps) if tps else {}
            hw = {}
            for tp in tps:
                c = consumer.committed(tp)
                old = int(prev["dlq_from"].get(str(tp.partition), 0)) if prev else 0
                hw[tp.partition] = max(c or 0, old)
            rewind = {tp: OffsetAndMetadata(begin[tp], "", -1) for tp in tps if (consumer.committed(tp) or 0) > begin[tp]}
            if rewind:
                consumer.commit(rewind)
            store.set_record(key, json.dumps({"epoch": b, "dlq_from": {str(p): o for p, o in hw.items()}}))
            out[source] = hw
    finally:
        if consumer is not None:
            consumer.close(autocommit=False)
    return out


def ensure_dlq_topics(plan: Plan, topics) -> None:
    """Create `<topic>.dlq` (one partition, the broker's default replication, max.message.bytes
    `sinks.DLQ_MAX_MESSAGE_BYTES`) if missing, so the first dead letter does not wait for the
    broker to auto-create it (or fail where it cannot). An existing one must take a stub dead
    letter at least (`sinks.MIN_DLQ_MESSAGE_BYTES`): the job refuses to start otherwise."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from .sinks import DLQ_MAX_MESSAGE_BYTES, MIN_DLQ_MESSAGE_BYTES, dlq_max_message_bytes, dlq_topic, kafka_config

    cfg = {k: v for k, v in kafka_config(plan).items() if k in KafkaAdminClient.DEFAULT_CONFIG}
    admin = KafkaAdminClient(**cfg)
    try:
        existing = set(admin.list_topics())
        for t in topics:
            if dlq_topic(t) not in existing:
                try:
                    admin.create_topics([NewTopic(dlq_topic(t), 1, -1, topic_configs={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)})])
                except TopicAlreadyExistsError:
                    pass
    finally:
        admin.close()
    for t in topics:
        have = dlq_max_message_bytes(cfg, dlq_topic(t))
        if have < MIN_DLQ_MESSAGE_BYTES:
            raise ValueError(
                f"dead-letter topic {dlq_topic(t)} takes messages of at most {have:,} bytes (max.message.bytes): too small for a "
                f"dead letter (at least {MIN_DLQ_MESSAGE_BYTES:,}; featureline creates it with {DLQ_MAX_MESSAGE_BYTES:,})"
            )


_CRASH: list = []


def crash_point(name: str) -> None:
    """Fault injection for the tests: FEATURELINE_STREAM_CRASH=<point>:<n> kills this process
    with SIGKILL the n-th time it reaches <point> (mid_merge, before_commit)."""
    if not _CRASH:
        import os

        spec = os.environ.get("FEATURELINE_STREAM_CRASH", "")
        point, _, n = spec.partition(":")
        _CRASH.append([point, int(n or 1)] if point else None)
    c = _CRASH[0]
    if c is not None and c[0] == name:
        c[1] -= 1
        if c[1] <= 0:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


def metrics(run_id: str = "main"):
    from .metrics import StreamMetrics

    m = _METRICS.get(run_id)
    if m is None:
        m = _METRICS[run_id] = StreamMetrics()
    return m


def _dofns():
    import apache_beam as beam
    from apache_beam.metrics import Metrics

    class ApplyBatch(beam.DoFn):
        def __init__(
            self,
            plan: Plan,
            topics: dict[str, str],
            boundaries: dict[str, int | None],
            epochs: dict[str, str],
            dlq_from: dict[str, dict],
            store_id: str | None = None,
        ):
            self.plan, self.topics, self.boundaries, self.epochs, self.dlq_from = plan, topics, boundaries, epochs, dlq_from
            self.store_id = store_id

        def setup(self):
            from ..online.store import OnlineStore
            from ..outage import Outage
            from .apply import StreamApplier

            self.store = OnlineStore(self.plan)
            self.store.outage = Outage("Redis (the stream's writes)")  # writes wait out an outage, then go on
            self.appliers = {
                t: StreamApplier(
                    self.plan,
                    s,
                    self.store,
                    boundary_us=self.boundaries.get(s),
                    epoch=self.epochs.get(s, ""),
                    dlq_from=self.dlq_from.get(s),
                    store_id=self.store_id,
                    group=self.plan.project.kafka_consumer_group,
                )
                for t, s in self.topics.items()
            }
            for a in self.appliers.values():
                a.on_merged = lambda: crash_point("mid_merge")

        def process(self, batch):
            out = self.appliers[batch.topic].apply(batch.topic, batch.partition, batch.records, checked=batch.decoded)
            out.lost = batch.lost
            yield out

        def teardown(self):
            for a in getattr(self, "appliers", {}).values():
                a.close()

    class Commit(beam.DoFn):
        """Dead letters + offsets in one Kafka transaction per batch (sinks.Deliver, run by a child
        process: deliver_proc.py), then metrics."""

        def __init__(self, plan: Plan, topics: dict[str, str], opts: StreamOptions):
            self.plan, self.topics, self.opts = plan, topics, opts
            from .metrics import COUNTERS

            self.counters = {k: Metrics.counter("featureline", k) for k in COUNTERS}

        def setup(self):
            from .deliver_proc import DeliverProcess
            from .sinks import LagProbe, kafka_config

            self.deliver = _take_fenced(self.opts.run_id)
            if self.deliver is None:
                cfg = kafka_config(self.plan)
                self.deliver = DeliverProcess(cfg, self.plan.project.kafka_consumer_group, _contracts(self.plan, self.topics))
                _keep_deliver(self.opts.run_id, self.deliver)
            self.lag = LagProbe(kafka_config(self.plan))
            self.metrics = metrics(self.opts.run_id)
            if self.opts.metrics_port and self.metrics._prom is None:
                self.metrics.serve(self.opts.metrics_port)
            self.last_report = time.monotonic()

        def process(self, out):
            if out.consumed:
                crash_point("before_commit")
                self.deliver.deliver(out)
            self.metrics.record(out)
            for k, c in self.counters.items():
                c.inc(getattr(out, k))
            now = time.monotonic()
            if now - self.last_report >= self.opts.report_every_s:
                self.last_report = now
                self.lag.probe(dict(self.metrics.next_offset), self.metrics.set_lag)  # in a thread: never holds up the stream
                if not self.opts.quiet:
                    print(f"[stream] {self.metrics.line()}", file=sys.stderr, flush=True)
            return []

        def teardown(self):
            d = getattr(self, "deliver", None)
            if d is not None:
                d.close()
                self.lag.close()

    return ApplyBatch, Commit


# The DoFns above reach the registries through these module functions: cloudpickle ships the
# DoFn classes by value, and a registry named in their methods would be pickled with them.
def _take_fenced(run_id: str):
    """The transaction process run() started and fenced for this job, once (in-process runner)."""
    return _FENCED.pop(run_id, None)


def _keep_deliver(run_id: str, d) -> None:
    _DELIVERS.setdefault(run_id, []).append(d)


def _contracts(plan: Plan, topics: dict[str, str]) -> dict:
    return {t: plan.contracts[plan.sources[s].contract] for t, s in topics.items()}


def build(
    p,
    plan: Plan,
    opts: StreamOptions,
    *,
    boundaries: dict[str, int | None],
    epochs: dict[str, str] | None = None,
    dlq_from: dict[str, dict] | None = None,
    start_offsets: dict[tuple[str, int], int] | None = None,
    store_id: str | None = None,
):
    """Add the stream to pipeline `p`. `store_id`: the online store's id (online/state.py): every
    write then checks that Redis holds all the writes before it."""
    import apache_beam as beam

    from .check import ContractCheck
    from .kafka_source import ReadFromKafkaPartitions
    from .sinks import kafka_settings

    topics = stream_sources(plan, opts.sources)
    if not topics:
        raise ValueError("no source has a stream side feeding an online view: nothing to stream")
    ApplyBatch, Commit = _dofns()
    cfg = kafka_settings(plan)  # secrets as references: the transforms are pickled for the runner
    bootstrap = cfg.pop("bootstrap_servers")
    return (
        p
        | "ReadKafka"
        >> ReadFromKafkaPartitions(
            bootstrap_servers=bootstrap,
            topics=sorted(topics),
            group_id=plan.project.kafka_consumer_group,
            bounded=opts.until_caught_up,
            start=opts.start,
            max_poll_records=opts.batch_limit,
            readers_per_partition=opts.readers_per_partition or 1,
            poll_timeout_ms=opts.poll_timeout_ms,
            consumer_config=cfg,
            # each record's contract check runs in its partition's reader process
            decoders={t: ContractCheck(plan.contracts[plan.sources[s].contract]) for t, s in topics.items()},
            start_offsets=start_offsets,
            skip_lost=opts.skip_lost,
        )
        | "Apply" >> beam.ParDo(ApplyBatch(plan, topics, boundaries, epochs or {}, dlq_from or {}, store_id))
        | "Commit" >> beam.ParDo(Commit(plan, topics, opts))
    )


def pipeline_options(opts: StreamOptions):
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(opts.beam_args)
    if opts.runner != DEFAULT_RUNNER:
        args.append(f"--runner={opts.runner}")
    if not opts.until_caught_up:
        args.append("--streaming")
    return PipelineOptions(args)


def run(plan: Plan, opts: StreamOptions, *, on_new_partitions=None):
    """Build and run the stream; returns this process's metrics (complete on FnApiRunner).

    Live (not until_caught_up), the topics' partitions are looked up every
    `opts.discover_every_s`; when some were added, `on_new_partitions(new)` is called once
    (the CLI restarts the job, which then reads them from the start policy; nothing is lost:
    what was not committed is read again). Without a callback a warning is printed."""
    from .pipe import release_pool

    try:
        return _run(plan, opts, on_new_partitions)
    finally:
        _FENCED.pop(opts.run_id, None)
        for d in _DELIVERS.pop(opts.run_id, []):
            d.close()  # every batch handed over is committed when run() returns
        release_pool()


def _run(plan: Plan, opts: StreamOptions, on_new_partitions):
    from ..online.store import OnlineStore
    from ..outage import Outage, retrying, transient_errors

    topics = stream_sources(plan, opts.sources)
    watch = not opts.until_caught_up and opts.discover_every_s > 0
    # Redis or the broker away at launch: wait for them (one line), as a running job would
    starting = Outage("Redis or Kafka (the stream's start)")
    patience = 600.0 if opts.until_caught_up else None

    def retried(fn):
        return retrying(fn, starting, transient_errors(), give_up_after_s=patience)

    partitions = retried(lambda: _partitions(plan, topics)) if watch or opts.runner == DEFAULT_RUNNER else []
    if watch:
        _watch_partitions(plan, topics, set(partitions), opts.discover_every_s, on_new_partitions)
    deliver = None
    if opts.runner == DEFAULT_RUNNER:
        # The DoFns run in this process: their helper processes start while Beam is imported.
        # The transaction process fences the producers of a job that died before this one reads
        # the group's offsets: a commit still on its way from there cannot land afterwards.
        from .deliver_proc import DeliverProcess
        from .pipe import prewarm
        from .sinks import kafka_config

        if opts.readers_per_partition is None:
            opts = replace(opts, readers_per_partition=auto_readers_per_partition(len(partitions)))
        prewarm("featureline.stream.reader_proc", len(partitions) * opts.readers_per_partition)
        deliver = DeliverProcess(kafka_config(plan), plan.project.kafka_consumer_group, _contracts(plan, topics))
        _DELIVERS[opts.run_id] = [deliver]
        _FENCED[opts.run_id] = deliver
        deliver.fence(partitions, wait=False)
    import apache_beam as beam

    from .sinks import kafka_config
    from .starts import committed_offsets, resolve_starts

    store = OnlineStore(plan)
    retried(lambda: ensure_dlq_topics(plan, topics))
    if deliver is not None:
        deliver.flush()  # fenced: from here on the group's offsets are final
    group = plan.project.kafka_consumer_group
    partitions = partitions or retried(lambda: _partitions(plan, topics))
    # a store that lost its data is refused (the group applied records before: they are not there)
    has_history = any(o is not None for o in retried(lambda: committed_offsets(kafka_config(plan), group, partitions)).values())
    state = retried(lambda: wait_for_store(store, has_history=has_history, group=group))
    boundaries, epochs = retried(lambda: store.read_boundaries(plan, sorted(topics.values())))
    if opts.from_us is not None:
        boundaries = {s: opts.from_us for s in boundaries}
    dlq_from = retried(lambda: start_epochs(plan, store, topics, epochs))
    starts, lost, behind = retried(
        lambda: resolve_starts(
            kafka_config(plan), group, partitions, policy=opts.start, skip_lost=opts.skip_lost, applied=state.applied(group, partitions)
        )
    )
    for (t, part), o in behind.items():
        d = dlq_from.setdefault(topics[t], {})
        d[part] = max(d.get(part, 0), o)
    _METRICS.pop(opts.run_id, None)
    m = metrics(opts.run_id)
    m.add_lost(lost)
    if opts.runner == DEFAULT_RUNNER:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        runner = FnApiRunner()
    else:
        runner = None  # from --runner in the options; never the default DirectRunner (it fetches Prism)
    with beam.Pipeline(runner=runner, options=pipeline_options(opts)) as p:
        build(p, plan, opts, boundaries=boundaries, epochs=epochs, dlq_from=dlq_from, start_offsets=starts, store_id=state.id)
    return m, boundaries


def wait_for_store(store, *, has_history: bool, group: str, wait_s: float = 600.0):
    """The online store's state (online/state.py) for the stream: a new one is marked, one that
    lost its data refused (StoreLost); while a backfill writes it, the stream waits (a line says so)."""
    from ..online.state import StoreBusy

    deadline = time.monotonic() + wait_s
    said = False
    while True:
        try:
            return store.ensure_for_stream(has_history=has_history, group=group)
        except StoreBusy as e:
            if time.monotonic() > deadline:
                raise
            if not said:
                print(f"[stream] waiting: {e}", file=sys.stderr, flush=True)
                said = True
            time.sleep(1.0)


def auto_readers_per_partition(partitions: int, cores: int | None = None) -> int:
    """2 reader processes per partition when there are fewer partitions than cores, else 1: one
    process decodes and checks ~33k-44k records/s here, and with one partition it is the stream's
    slowest stage; more than 2 would outrun the job itself."""
    cores = cores or os.cpu_count() or 1
    return 2 if 0 < partitions < cores else 1


def _watch_partitions(plan: Plan, topics, known: set, every_s: float, on_new) -> None:
    """A daemon thread comparing the topics' partitions with those at launch (`known`), every every_s."""
    import threading

    from ..outage import Outage

    outage = Outage("Kafka (partition discovery)")

    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                new = sorted(set(_partitions(plan, topics)) - known)
                outage.ok()
            except Exception as e:  # a broker away: try again next period (one line per outage)
                outage.failed(e, "looking again")
                continue
            if new:
                names = ", ".join(f"{t}:{p}" for t, p in new)
                if on_new is None:
                    print(f"[stream] new partitions {names}: restart the job to read them", file=sys.stderr, flush=True)
                else:
                    on_new(new)
                return

    threading.Thread(target=watch, name="featureline-discover", daemon=True).start()


def _partitions(plan: Plan, topics) -> list[tuple[str, int]]:
    from kafka import KafkaConsumer

    from .sinks import kafka_config

    c = KafkaConsumer(**{k: v for k, v in kafka_config(plan).items() if k in KafkaConsumer.DEFAULT_CONFIG})
    try:
        return [(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]
    finally:
        c.close()
