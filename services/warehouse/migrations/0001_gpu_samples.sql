-- Raw GPU samples: one row per GPU per tick, as the telemetry service read them from NVML/DCGM.
-- Units are NVML's own integers (percent, bytes, milliwatts, millijoules, degrees C, MHz);
-- a value the source could not read is NULL (absent, never zero).
-- Codecs: Delta on the timestamps, the energy counter and memory (regular or stepwise series:
-- the deltas are near constant and ZSTD packs them to almost nothing; as small as DoubleDelta
-- here and several times faster to read), T64 on small integers, Gorilla on DCGM ratios.
-- Kept 30 days (TTL; change it with a later migration's ALTER TABLE ... MODIFY TTL).
CREATE TABLE IF NOT EXISTS gpu_samples
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
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (cluster, node, gpu, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1
COMMENT 'One row per GPU per sample tick: the raw telemetry of that GPU at ts (NVML units; NULL = not readable)';
