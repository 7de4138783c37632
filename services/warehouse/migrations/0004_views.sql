-- Views for analysts. GPU-hours count the time a GPU reported; "allocated" means a job was on
-- it; "idle" means allocated with mean utilization under 5 percent for the minute. The
-- rollup-backed views read gpu_util_1h; v_gpu_utilization_raw scans the raw samples.
-- Filter them with WHERE (day, tenant, job_id, ...); they are plain views.

CREATE VIEW IF NOT EXISTS v_job_utilization AS
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

CREATE VIEW IF NOT EXISTS v_tenant_utilization AS
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

CREATE VIEW IF NOT EXISTS v_node_utilization AS
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

CREATE VIEW IF NOT EXISTS v_nodes_latest AS
SELECT * FROM nodes FINAL
COMMENT 'One row per GPU of each node: its latest inventory (model, memory, health, online)';

CREATE VIEW IF NOT EXISTS v_model_utilization AS
SELECT
    if(m.model = '', 'unknown', m.model) AS model,
    toDate(u.hour) AS day,
    uniqExact(u.cluster, u.node, u.gpu) AS gpus,
    sum(u.gpu_seconds) / 3600 AS gpu_hours,
    sumIf(u.gpu_seconds, u.job_id != '') / 3600 AS allocated_gpu_hours,
    sum(u.util_seconds) / nullIf(sum(u.gpu_seconds), 0) AS util_mean,
    sum(u.idle_allocated_seconds) / 3600 AS idle_gpu_hours
FROM gpu_util_1h AS u
LEFT JOIN
(
    SELECT cluster, node, gpu, argMax(model, ts) AS model FROM nodes GROUP BY cluster, node, gpu
) AS m ON u.cluster = m.cluster AND u.node = m.node AND u.gpu = m.gpu
GROUP BY model, day
COMMENT 'One row per GPU model per day: GPUs, GPU-hours observed and allocated, mean utilization, idle GPU-hours';

CREATE VIEW IF NOT EXISTS v_idle_allocated AS
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

CREATE VIEW IF NOT EXISTS v_job_energy AS
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

CREATE VIEW IF NOT EXISTS v_gpu_utilization_raw AS
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
