-- The gpufleet warehouse on a ClickHouse cluster: services/warehouse/migrations, replicated and
-- sharded. Made by `gpufleet cluster-sql > deploy/clickhouse/cluster.sql`; do not edit by hand
-- (a test compares it with the migrations). The rules are in gpufleet/admin/cluster_sql_cmd.py.
--
-- Needs, on every server: macros {cluster}, {shard} and {replica}, a remote_servers entry
-- named as {cluster}, and ClickHouse Keeper. Apply once, before `gpufleet warehouse migrate`:
--   clickhouse-client --host <any server> --user <admin> --multiquery < cluster.sql
--   gpufleet warehouse migrate --url http://<writer>:<password>@<any server>:8123/default
-- Every migration statement is CREATE ... IF NOT EXISTS, so migrate then finds every object
-- and only records the versions in schema_migrations (replicated to every server here).
-- After a new migration NNNN: `gpufleet cluster-sql --since NNNN | clickhouse-client ...`,
-- then migrate (migrate alone would change one server only).
-- Inserts through a Distributed table keep their insert_deduplication_token only when they
-- are forwarded synchronously: give the writer user distributed_foreground_insert = 1.

-- Ledger of the migrations, one copy on every server (no {shard} in its path).
CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER '{cluster}'
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/gpufleet/schema_migrations', '{replica}')
ORDER BY version
COMMENT 'One row per schema migration applied to this database';

-- 0001_gpu_samples ------------------------------------------------------------------------

-- sharded by cityHash64(cluster, node)
CREATE TABLE IF NOT EXISTS gpu_samples_local ON CLUSTER '{cluster}'
(
    cluster LowCardinality(String) CODEC(ZSTD(1)),
    node LowCardinality(String) CODEC(ZSTD(1)),
    gpu UInt16 CODEC(Delta, ZSTD(1)),
    uuid LowCardinality(String) CODEC(ZSTD(1)),
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    util_gpu Nullable(UInt8) CODEC(T64, ZSTD(1)),
    util_mem Nullable(UInt8) CODEC(T64, ZSTD(1)),
    mem_used_bytes Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    mem_free_bytes Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    mem_reserved_bytes Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    power_mw Nullable(UInt32) CODEC(T64, ZSTD(1)),
    energy_mj Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    temp_c Nullable(Int16) CODEC(T64, ZSTD(1)),
    mem_temp_c Nullable(Int16) CODEC(T64, ZSTD(1)),
    sm_clock_mhz Nullable(UInt16) CODEC(T64, ZSTD(1)),
    mem_clock_mhz Nullable(UInt16) CODEC(T64, ZSTD(1)),
    throttle_reasons Nullable(UInt64) CODEC(T64, ZSTD(1)),
    sm_active Nullable(Float32) CODEC(Gorilla, ZSTD(1)),
    tensor_active Nullable(Float32) CODEC(Gorilla, ZSTD(1)),
    ecc_volatile_corrected Nullable(UInt64) CODEC(T64, ZSTD(1)),
    ecc_volatile_uncorrected Nullable(UInt64) CODEC(T64, ZSTD(1)),
    remapped_rows_pending Nullable(Bool) CODEC(ZSTD(1)),
    remapped_rows_failure Nullable(Bool) CODEC(ZSTD(1)),
    xid_errors Array(UInt32) CODEC(ZSTD(1))
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gpufleet/gpu_samples_local', '{replica}')
PARTITION BY toYYYYMMDD(ts)
ORDER BY (cluster, node, gpu, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS replicated_deduplication_window = 1000, ttl_only_drop_parts = 1
COMMENT 'One row per GPU per sample tick: the raw telemetry of that GPU at ts (NVML units; NULL = not readable)';

CREATE TABLE IF NOT EXISTS gpu_samples ON CLUSTER '{cluster}' AS gpu_samples_local
ENGINE = Distributed('{cluster}', default, gpu_samples_local, cityHash64(cluster, node))
COMMENT 'One row per GPU per sample tick: the raw telemetry of that GPU at ts (NVML units; NULL = not readable)';

-- 0002_jobs_nodes_alerts ------------------------------------------------------------------

-- sharded by cityHash64(job_id)
CREATE TABLE IF NOT EXISTS job_events_local ON CLUSTER '{cluster}'
(
    event_id String CODEC(ZSTD(1)),
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    job_id String CODEC(ZSTD(1)),
    state LowCardinality(String),
    tenant LowCardinality(Nullable(String)),
    node LowCardinality(Nullable(String)),
    gpus Array(UInt16),
    gpu_milli Nullable(UInt16),
    member Nullable(UInt16),
    exit_code Nullable(Int32),
    reason Nullable(String) CODEC(ZSTD(1)),
    source LowCardinality(String) DEFAULT 'gpufleet',
    attempt UInt16 DEFAULT 0
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gpufleet/job_events_local', '{replica}')
ORDER BY (job_id, ts)
SETTINGS replicated_deduplication_window = 1000
COMMENT 'One row per job lifecycle event (JobEvent): job_id entered state at ts; gpus empty when not given';

CREATE TABLE IF NOT EXISTS job_events ON CLUSTER '{cluster}' AS job_events_local
ENGINE = Distributed('{cluster}', default, job_events_local, cityHash64(job_id))
COMMENT 'One row per job lifecycle event (JobEvent): job_id entered state at ts; gpus empty when not given';

-- sharded by cityHash64(job_id)
CREATE TABLE IF NOT EXISTS placements_local ON CLUSTER '{cluster}'
(
    event_id String CODEC(ZSTD(1)),
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    job_id String CODEC(ZSTD(1)),
    tenant LowCardinality(String),
    node LowCardinality(String),
    gpus Array(UInt16),
    gpu_milli UInt16 DEFAULT 1000,
    member UInt16 DEFAULT 0,
    attempt UInt16 DEFAULT 0
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gpufleet/placements_local', '{replica}')
ORDER BY (job_id, ts)
SETTINGS replicated_deduplication_window = 1000
COMMENT 'One row per scheduler placement: member of job_id placed on node, GPU indices gpus, share gpu_milli/1000 each';

CREATE TABLE IF NOT EXISTS placements ON CLUSTER '{cluster}' AS placements_local
ENGINE = Distributed('{cluster}', default, placements_local, cityHash64(job_id))
COMMENT 'One row per scheduler placement: member of job_id placed on node, GPU indices gpus, share gpu_milli/1000 each';

-- sharded by cityHash64(cluster, node)
CREATE TABLE IF NOT EXISTS nodes_local ON CLUSTER '{cluster}'
(
    cluster LowCardinality(String),
    node LowCardinality(String),
    gpu UInt16,
    uuid String,
    model LowCardinality(String),
    memory_total_bytes UInt64,
    pci_bus_id Nullable(String),
    mig_mode Nullable(Bool),
    nvlink_domain Nullable(Int32),
    health LowCardinality(String) DEFAULT 'ok',
    health_reason Nullable(String),
    cpu_milli UInt32 DEFAULT 0,
    memory_mib UInt64 DEFAULT 0,
    driver_version LowCardinality(Nullable(String)),
    labels Map(String, String),
    online Bool DEFAULT true,
    ts DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/gpufleet/nodes_local', '{replica}', ts)
ORDER BY (cluster, node, gpu)
SETTINGS replicated_deduplication_window = 1000
COMMENT 'One row per GPU of a node inventory (NodeInventory, node fields repeated); the latest ts per GPU is its state (read with FINAL or v_nodes_latest)';

CREATE TABLE IF NOT EXISTS nodes ON CLUSTER '{cluster}' AS nodes_local
ENGINE = Distributed('{cluster}', default, nodes_local, cityHash64(cluster, node))
COMMENT 'One row per GPU of a node inventory (NodeInventory, node fields repeated); the latest ts per GPU is its state (read with FINAL or v_nodes_latest)';

-- sharded by cityHash64(alert_id)
CREATE TABLE IF NOT EXISTS alerts_local ON CLUSTER '{cluster}'
(
    event_id String CODEC(ZSTD(1)),
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    alert_id String,
    kind LowCardinality(String),
    state LowCardinality(String),
    severity LowCardinality(String) DEFAULT 'warning',
    cluster LowCardinality(Nullable(String)),
    node LowCardinality(Nullable(String)),
    gpu Nullable(UInt16),
    job_id Nullable(String),
    tenant LowCardinality(Nullable(String)),
    message String CODEC(ZSTD(1)),
    since Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gpufleet/alerts_local', '{replica}')
ORDER BY (alert_id, ts)
SETTINGS replicated_deduplication_window = 1000
COMMENT 'One row per alert transition (Alert): alert_id went to state (firing or resolved) at ts';

CREATE TABLE IF NOT EXISTS alerts ON CLUSTER '{cluster}' AS alerts_local
ENGINE = Distributed('{cluster}', default, alerts_local, cityHash64(alert_id))
COMMENT 'One row per alert transition (Alert): alert_id went to state (firing or resolved) at ts';

-- 0003_rollups ----------------------------------------------------------------------------

-- sharded by cityHash64(cluster, node)
CREATE TABLE IF NOT EXISTS gpu_util_1m_local ON CLUSTER '{cluster}'
(
    cluster LowCardinality(String),
    node LowCardinality(String),
    gpu UInt16,
    uuid LowCardinality(String),
    window_start DateTime('UTC') CODEC(Delta, ZSTD(1)),
    window_s UInt32 DEFAULT 60,
    samples UInt32,
    util_mean Float32 CODEC(Gorilla, ZSTD(1)),
    util_min Float32 CODEC(Gorilla, ZSTD(1)),
    util_max Float32 CODEC(Gorilla, ZSTD(1)),
    util_p95 Float32 CODEC(Gorilla, ZSTD(1)),
    mem_used_bytes_mean Float64 CODEC(Gorilla, ZSTD(1)),
    power_mw_mean Float64 CODEC(Gorilla, ZSTD(1)),
    energy_mj UInt64 CODEC(T64, ZSTD(1)),
    job_id Nullable(String),
    tenant LowCardinality(Nullable(String))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/gpufleet/gpu_util_1m_local', '{replica}')
PARTITION BY toYYYYMM(window_start)
ORDER BY (cluster, node, gpu, window_start)
TTL window_start + INTERVAL 400 DAY
SETTINGS replicated_deduplication_window = 1000
COMMENT 'One row per GPU per window (GpuUtilWindow, normally a minute): utilization aggregates of that GPU and the job on it';

CREATE TABLE IF NOT EXISTS gpu_util_1m ON CLUSTER '{cluster}' AS gpu_util_1m_local
ENGINE = Distributed('{cluster}', default, gpu_util_1m_local, cityHash64(cluster, node))
COMMENT 'One row per GPU per window (GpuUtilWindow, normally a minute): utilization aggregates of that GPU and the job on it';

-- sharded by cityHash64(cluster, node)
CREATE TABLE IF NOT EXISTS gpu_util_1h_local ON CLUSTER '{cluster}'
(
    cluster LowCardinality(String),
    node LowCardinality(String),
    gpu UInt16,
    hour DateTime('UTC'),
    job_id String,
    tenant LowCardinality(String),
    gpu_seconds SimpleAggregateFunction(sum, UInt64),
    samples SimpleAggregateFunction(sum, UInt64),
    util_seconds SimpleAggregateFunction(sum, Float64),
    util_min SimpleAggregateFunction(min, Float32),
    util_max SimpleAggregateFunction(max, Float32),
    idle_allocated_seconds SimpleAggregateFunction(sum, UInt64),
    mem_byte_seconds SimpleAggregateFunction(sum, Float64),
    power_mw_seconds SimpleAggregateFunction(sum, Float64),
    energy_mj SimpleAggregateFunction(sum, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/gpufleet/gpu_util_1h_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (cluster, node, gpu, hour, job_id, tenant)
COMMENT 'One row per GPU per hour per job (job_id empty: no job): sums over the minutes of gpu_util_1m; util mean = util_seconds / gpu_seconds';

CREATE TABLE IF NOT EXISTS gpu_util_1h ON CLUSTER '{cluster}' AS gpu_util_1h_local
ENGINE = Distributed('{cluster}', default, gpu_util_1h_local, cityHash64(cluster, node))
COMMENT 'One row per GPU per hour per job (job_id empty: no job): sums over the minutes of gpu_util_1m; util mean = util_seconds / gpu_seconds';

CREATE MATERIALIZED VIEW IF NOT EXISTS gpu_util_1h_mv ON CLUSTER '{cluster}' TO gpu_util_1h_local AS
SELECT
    cluster, node, gpu,
    toStartOfHour(window_start) AS hour,
    ifNull(job_id, '') AS job_id,
    ifNull(tenant, '') AS tenant,
    toUInt64(sum(window_s)) AS gpu_seconds,
    toUInt64(sum(samples)) AS samples,
    sum(util_mean * window_s) AS util_seconds,
    min(util_min) AS util_min,
    max(util_max) AS util_max,
    toUInt64(sumIf(window_s, job_id IS NOT NULL AND util_mean < 5)) AS idle_allocated_seconds,
    sum(mem_used_bytes_mean * window_s) AS mem_byte_seconds,
    sum(power_mw_mean * window_s) AS power_mw_seconds,
    toUInt64(sum(energy_mj)) AS energy_mj
FROM gpu_util_1m_local
GROUP BY cluster, node, gpu, hour, job_id, tenant
COMMENT 'Feeds gpu_util_1h from each insert into gpu_util_1m';

-- 0004_views ------------------------------------------------------------------------------

CREATE VIEW IF NOT EXISTS v_job_utilization ON CLUSTER '{cluster}' AS
SELECT
    job_id,
    any(tenant) AS tenant,
    uniqExact(cluster, node, gpu) AS gpus,
    min(hour) AS first_hour,
    max(hour) AS last_hour,
    sum(gpu_seconds) / 3600 AS gpu_hours,
    sum(util_seconds) / nullIf(sum(gpu_seconds), 0) AS util_mean,
    max(util_max) AS util_max,
    sum(idle_allocated_seconds) / 3600 AS idle_gpu_hours
FROM gpu_util_1h
WHERE job_id != ''
GROUP BY job_id
COMMENT 'One row per job: GPUs used, GPU-hours, time-weighted mean utilization (percent), idle GPU-hours';

CREATE VIEW IF NOT EXISTS v_tenant_utilization ON CLUSTER '{cluster}' AS
SELECT
    tenant,
    toDate(hour) AS day,
    uniqExact(job_id) AS jobs,
    sum(gpu_seconds) / 3600 AS gpu_hours,
    sum(util_seconds) / nullIf(sum(gpu_seconds), 0) AS util_mean,
    sum(idle_allocated_seconds) / 3600 AS idle_gpu_hours,
    sum(energy_mj) / 3.6e9 AS energy_kwh
FROM gpu_util_1h
WHERE job_id != ''
GROUP BY tenant, day
COMMENT 'One row per tenant per day: jobs, GPU-hours allocated, mean utilization, idle GPU-hours, energy';

CREATE VIEW IF NOT EXISTS v_node_utilization ON CLUSTER '{cluster}' AS
SELECT
    cluster,
    node,
    toDate(hour) AS day,
    uniqExact(gpu) AS gpus,
    sum(gpu_seconds) / 3600 AS gpu_hours,
    sumIf(gpu_seconds, job_id != '') / 3600 AS allocated_gpu_hours,
    sum(util_seconds) / nullIf(sum(gpu_seconds), 0) AS util_mean,
    sum(idle_allocated_seconds) / 3600 AS idle_gpu_hours,
    sum(energy_mj) / 3.6e9 AS energy_kwh
FROM gpu_util_1h
GROUP BY cluster, node, day
COMMENT 'One row per node per day: GPU-hours observed and allocated, mean utilization, idle GPU-hours, energy';

CREATE VIEW IF NOT EXISTS v_nodes_latest ON CLUSTER '{cluster}' AS
SELECT * FROM nodes FINAL
COMMENT 'One row per GPU of each node: its latest inventory (model, memory, health, online)';

CREATE VIEW IF NOT EXISTS v_model_utilization ON CLUSTER '{cluster}' AS
SELECT
    if(m.model = '', 'unknown', m.model) AS model,
    toDate(u.hour) AS day,
    uniqExact(u.cluster, u.node, u.gpu) AS gpus,
    sum(u.gpu_seconds) / 3600 AS gpu_hours,
    sumIf(u.gpu_seconds, u.job_id != '') / 3600 AS allocated_gpu_hours,
    sum(u.util_seconds) / nullIf(sum(u.gpu_seconds), 0) AS util_mean,
    sum(u.idle_allocated_seconds) / 3600 AS idle_gpu_hours
FROM gpu_util_1h AS u
GLOBAL LEFT JOIN
(
    SELECT cluster, node, gpu, argMax(model, ts) AS model FROM nodes GROUP BY cluster, node, gpu
) AS m ON u.cluster = m.cluster AND u.node = m.node AND u.gpu = m.gpu
GROUP BY model, day
COMMENT 'One row per GPU model per day: GPUs, GPU-hours observed and allocated, mean utilization, idle GPU-hours';

CREATE VIEW IF NOT EXISTS v_idle_allocated ON CLUSTER '{cluster}' AS
SELECT
    tenant,
    job_id,
    toDate(hour) AS day,
    sum(gpu_seconds) / 3600 AS allocated_gpu_hours,
    sum(idle_allocated_seconds) / 3600 AS idle_gpu_hours,
    sum(idle_allocated_seconds) / nullIf(sum(gpu_seconds), 0) AS idle_share
FROM gpu_util_1h
WHERE job_id != ''
GROUP BY tenant, job_id, day
COMMENT 'One row per job per day: allocated GPU-hours and those spent idle (under 5 percent), the wasted share';

CREATE VIEW IF NOT EXISTS v_job_energy ON CLUSTER '{cluster}' AS
SELECT
    job_id,
    any(tenant) AS tenant,
    sum(energy_mj) / 3.6e9 AS energy_kwh,
    sum(power_mw_seconds) / nullIf(sum(gpu_seconds), 0) / 1000 AS power_w_mean,
    sum(gpu_seconds) / 3600 AS gpu_hours
FROM gpu_util_1h
WHERE job_id != ''
GROUP BY job_id
COMMENT 'One row per job: energy its GPUs used (kWh), mean power per GPU (W), GPU-hours';

CREATE VIEW IF NOT EXISTS v_gpu_utilization_raw ON CLUSTER '{cluster}' AS
SELECT
    cluster,
    node,
    gpu,
    toDate(ts) AS day,
    count() AS samples,
    avg(util_gpu) AS util_mean,
    max(util_gpu) AS util_max,
    avg(power_mw) / 1000 AS power_w_mean,
    (max(energy_mj) - min(energy_mj)) / 3.6e9 AS energy_kwh,
    max(temp_c) AS temp_c_max
FROM gpu_samples
GROUP BY cluster, node, gpu, day
SETTINGS optimize_aggregation_in_order = 1
COMMENT 'One row per GPU per day, straight from the raw samples: samples, mean and peak utilization, power, energy, peak temperature';

-- 0005_reclaims_drains_rightsizing --------------------------------------------------------

-- sharded by cityHash64(job_id)
CREATE TABLE IF NOT EXISTS reclaims_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gpufleet/reclaims_local', '{replica}')
ORDER BY (job_id, ts)
SETTINGS replicated_deduplication_window = 1000
COMMENT 'One row per reclaim message: kind warn (reclaim at reclaim_at unless busy), withdraw, or reclaim (action requeue or stop); nodes[i], gpus[i] name each GPU';

CREATE TABLE IF NOT EXISTS reclaims ON CLUSTER '{cluster}' AS reclaims_local
ENGINE = Distributed('{cluster}', default, reclaims_local, cityHash64(job_id))
COMMENT 'One row per reclaim message: kind warn (reclaim at reclaim_at unless busy), withdraw, or reclaim (action requeue or stop); nodes[i], gpus[i] name each GPU';

-- sharded by cityHash64(cluster, node)
CREATE TABLE IF NOT EXISTS gpu_drains_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gpufleet/gpu_drains_local', '{replica}')
ORDER BY (cluster, node, gpu, ts)
SETTINGS replicated_deduplication_window = 1000
COMMENT 'One row per drain (kind drain: cause xid, ecc, row_remap, lost or degraded; jobs stopped and requeued) or return (kind undrain) of a GPU; since is when the drain began';

CREATE TABLE IF NOT EXISTS gpu_drains ON CLUSTER '{cluster}' AS gpu_drains_local
ENGINE = Distributed('{cluster}', default, gpu_drains_local, cityHash64(cluster, node))
COMMENT 'One row per drain (kind drain: cause xid, ecc, row_remap, lost or degraded; jobs stopped and requeued) or return (kind undrain) of a GPU; since is when the drain began';

-- sharded by cityHash64(job_id)
CREATE TABLE IF NOT EXISTS job_rightsizing_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/gpufleet/job_rightsizing_local', '{replica}', ts)
ORDER BY job_id
SETTINGS replicated_deduplication_window = 1000
COMMENT 'One row per right-sizing report (RightSizingReport); the latest ts per job is its state, final once the job ended (read with FINAL or v_job_rightsizing)';

CREATE TABLE IF NOT EXISTS job_rightsizing ON CLUSTER '{cluster}' AS job_rightsizing_local
ENGINE = Distributed('{cluster}', default, job_rightsizing_local, cityHash64(job_id))
COMMENT 'One row per right-sizing report (RightSizingReport); the latest ts per job is its state, final once the job ended (read with FINAL or v_job_rightsizing)';

CREATE VIEW IF NOT EXISTS v_job_rightsizing ON CLUSTER '{cluster}' AS
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

CREATE VIEW IF NOT EXISTS v_reclaims ON CLUSTER '{cluster}' AS
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

CREATE VIEW IF NOT EXISTS v_gpu_drains ON CLUSTER '{cluster}' AS
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
