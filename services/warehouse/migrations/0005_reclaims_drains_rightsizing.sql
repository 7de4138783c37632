-- The closed loop's decisions, as the analytics app publishes them: reclaim warnings,
-- withdrawals and requests (gpufleet.reclaims), GPU drains and returns (gpufleet.gpu.drains),
-- and right-sizing reports (gpufleet.jobs.rightsizing); with views for analysts.
-- One row per message; event ids are derived from what a message is about, so a replay makes
-- the same id: read distinct event_id, or through the views, which do.

CREATE TABLE IF NOT EXISTS reclaims
(
    event_id String CODEC(ZSTD(1)),
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    kind LowCardinality(String),
    job_id String CODEC(ZSTD(1)),
    tenant LowCardinality(Nullable(String)),
    queue LowCardinality(Nullable(String)),
    policy LowCardinality(String),
    nodes Array(LowCardinality(String)),
    gpus Array(UInt16),
    action LowCardinality(Nullable(String)),
    idle_since DateTime64(3, 'UTC'),
    reclaim_at Nullable(DateTime64(3, 'UTC')),
    util_mean Nullable(Float32),
    threshold Nullable(Float32),
    reason String CODEC(ZSTD(1))
)
ENGINE = MergeTree
ORDER BY (job_id, ts)
SETTINGS non_replicated_deduplication_window = 1000
COMMENT 'One row per reclaim message: kind warn (reclaim at reclaim_at unless busy), withdraw, or reclaim (action requeue or stop); nodes[i], gpus[i] name each GPU';

CREATE TABLE IF NOT EXISTS gpu_drains
(
    event_id String CODEC(ZSTD(1)),
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    kind LowCardinality(String),
    cluster LowCardinality(String),
    node LowCardinality(String),
    gpu UInt16,
    uuid String,
    cause LowCardinality(Nullable(String)),
    reason String CODEC(ZSTD(1)),
    jobs Array(String),
    since DateTime64(3, 'UTC'),
    healthy_since Nullable(DateTime64(3, 'UTC'))
)
ENGINE = MergeTree
ORDER BY (cluster, node, gpu, ts)
SETTINGS non_replicated_deduplication_window = 1000
COMMENT 'One row per drain (kind drain: cause xid, ecc, row_remap, lost or degraded; jobs stopped and requeued) or return (kind undrain) of a GPU; since is when the drain began';

CREATE TABLE IF NOT EXISTS job_rightsizing
(
    event_id String CODEC(ZSTD(1)),
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    job_id String CODEC(ZSTD(1)),
    tenant LowCardinality(Nullable(String)),
    queue LowCardinality(Nullable(String)),
    final Bool DEFAULT false,
    gpus_requested UInt32,
    gpu_milli UInt16 DEFAULT 1000,
    gpus_seen UInt32,
    gpus_busy UInt32,
    windows UInt32,
    gpu_minutes Float64,
    busy_gpu_minutes Float64,
    util_mean Float32,
    util_p95 Float32,
    util_max Float32,
    mem_peak_bytes UInt64,
    recommended_gpus UInt32,
    recommendation String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY job_id
SETTINGS non_replicated_deduplication_window = 1000
COMMENT 'One row per right-sizing report (RightSizingReport); the latest ts per job is its state, final once the job ended (read with FINAL or v_job_rightsizing)';

CREATE VIEW IF NOT EXISTS v_job_rightsizing AS
SELECT
    job_id,
    tenant,
    queue,
    final,
    gpus_requested,
    gpus_busy,
    recommended_gpus,
    gpus_requested - recommended_gpus AS gpus_to_give_back,
    gpu_minutes / 60 AS gpu_hours,
    (gpu_minutes - busy_gpu_minutes) / 60 AS idle_gpu_hours,
    util_mean,
    util_p95,
    util_max,
    mem_peak_bytes,
    recommendation,
    ts AS reported_at
FROM job_rightsizing FINAL
COMMENT 'One row per job: its latest right-sizing (final once it ended): GPUs asked, busy and recommended, GPU-hours, idle GPU-hours, p95 utilization, peak memory, the recommendation';

CREATE VIEW IF NOT EXISTS v_reclaims AS
SELECT
    job_id,
    any(tenant) AS tenant,
    any(queue) AS queue,
    any(policy) AS policy,
    idle_since,
    minIfOrNull(ts, kind = 'warn') AS warned_at,
    minIfOrNull(ts, kind = 'reclaim') AS reclaimed_at,
    minIfOrNull(ts, kind = 'withdraw') AS withdrawn_at,
    countIf(kind = 'reclaim') > 0 AS reclaimed,
    anyIf(action, kind = 'reclaim') AS action,
    max(length(gpus)) AS gpu_count,
    if(reclaimed, gpu_count * dateDiff('second', idle_since, reclaimed_at) / 3600, 0)
        AS idle_gpu_hours_before_reclaim,
    anyIf(reason, kind = 'reclaim') AS reason
FROM (SELECT DISTINCT ON (event_id) * FROM reclaims)
GROUP BY job_id, idle_since
COMMENT 'One row per idle streak of a job that was warned: when, whether it was reclaimed or withdrawn, the action, the GPUs, the GPU-hours it sat idle before the reclaim';

CREATE VIEW IF NOT EXISTS v_gpu_drains AS
SELECT
    cluster,
    node,
    gpu,
    since AS drained_at,
    anyIf(cause, kind = 'drain') AS cause,
    anyIf(reason, kind = 'drain') AS reason,
    anyIf(jobs, kind = 'drain') AS jobs_moved,
    minIfOrNull(ts, kind = 'undrain') AS returned_at,
    countIf(kind = 'undrain') = 0 AS drained_now,
    dateDiff('second', since, coalesce(returned_at, now64(3))) / 3600 AS drained_hours
FROM (SELECT DISTINCT ON (event_id) * FROM gpu_drains)
GROUP BY cluster, node, gpu, since
COMMENT 'One row per drain of a GPU: cause, reason, the jobs moved off it, when it returned (or drained_now), hours out of service';
