-- What happened to jobs, where they were placed, what the nodes have, and the alerts raised.

CREATE TABLE IF NOT EXISTS job_events
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
ENGINE = MergeTree
ORDER BY (job_id, ts)
SETTINGS non_replicated_deduplication_window = 1000
COMMENT 'One row per job lifecycle event (JobEvent): job_id entered state at ts; gpus empty when not given';

CREATE TABLE IF NOT EXISTS placements
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
ENGINE = MergeTree
ORDER BY (job_id, ts)
SETTINGS non_replicated_deduplication_window = 1000
COMMENT 'One row per scheduler placement: member of job_id placed on node, GPU indices gpus, share gpu_milli/1000 each';

CREATE TABLE IF NOT EXISTS nodes
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
ENGINE = ReplacingMergeTree(ts)
ORDER BY (cluster, node, gpu)
SETTINGS non_replicated_deduplication_window = 1000
COMMENT 'One row per GPU of a node inventory (NodeInventory, node fields repeated); the latest ts per GPU is its state (read with FINAL or v_nodes_latest)';

CREATE TABLE IF NOT EXISTS alerts
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
ENGINE = MergeTree
ORDER BY (alert_id, ts)
SETTINGS non_replicated_deduplication_window = 1000
COMMENT 'One row per alert transition (Alert): alert_id went to state (firing or resolved) at ts';
