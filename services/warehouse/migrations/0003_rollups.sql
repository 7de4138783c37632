-- Utilization rollups. ingest writes gpu_util_1m (its per-GPU windows, GpuUtilWindow); the
-- engine derives gpu_util_1h from every insert into gpu_util_1m (materialized view), so the
-- hourly table needs no writer of its own.
-- Idle while allocated: a minute with a job on the GPU and util_mean under 5 percent.

CREATE TABLE IF NOT EXISTS gpu_util_1m
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (cluster, node, gpu, window_start)
TTL window_start + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000
COMMENT 'One row per GPU per window (GpuUtilWindow, normally a minute): utilization aggregates of that GPU and the job on it';

CREATE TABLE IF NOT EXISTS gpu_util_1h
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
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (cluster, node, gpu, hour, job_id, tenant)
COMMENT 'One row per GPU per hour per job (job_id empty: no job): sums over the minutes of gpu_util_1m; util mean = util_seconds / gpu_seconds';

CREATE MATERIALIZED VIEW IF NOT EXISTS gpu_util_1h_mv TO gpu_util_1h AS
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
FROM gpu_util_1m
GROUP BY cluster, node, gpu, hour, job_id, tenant
COMMENT 'Feeds gpu_util_1h from each insert into gpu_util_1m';
