"""A synthetic day of a GPU fleet, generated inside the engine (INSERT ... SELECT FROM numbers).

Every node runs, each hour, either nothing, an idle job (allocated, under 5 % busy) or a busy
job; utilization wanders a little around the job's level, and power, clocks, temperature and
memory follow it, roughly as NVML reports a real fleet at 1 Hz.
"""

from __future__ import annotations

GPUS_PER_NODE = 8
MODELS = ("H100", "A100", "L40S")


def _phase(node: str, hour: str) -> str:
    """0-1: no job, 2: an idle job, 3-9: a busy job (per node and hour)."""
    return f"(cityHash64({node}, {hour}) % 10)"


def samples_sql(gpus: int, seconds: int, day: str) -> str:
    """Raw samples of ``gpus`` GPUs over ``seconds`` seconds from midnight of ``day``."""
    g = f"(number % {gpus})"
    t = f"intDiv(number, {gpus})"
    node = f"intDiv({g}, {GPUS_PER_NODE})"
    phase = _phase(node, f"intDiv({t}, 3600)")
    level = f"(40 + cityHash64({node}, intDiv({t}, 3600), 1) % 55)"
    util = (f"toUInt8(multiIf({phase} < 2, 0, {phase} = 2, cityHash64(number) % 4, "
            f"least(100, {level} + cityHash64(number) % 6)))")
    return f"""
INSERT INTO gpu_samples (cluster, node, gpu, uuid, ts, util_gpu, util_mem, mem_used_bytes,
    mem_free_bytes, mem_reserved_bytes, power_mw, energy_mj, temp_c, mem_temp_c, sm_clock_mhz,
    mem_clock_mhz, throttle_reasons, sm_active, tensor_active, ecc_volatile_corrected,
    ecc_volatile_uncorrected, remapped_rows_pending, remapped_rows_failure)
SELECT 'bench', concat('n', leftPad(toString({node}), 4, '0')), {g} % {GPUS_PER_NODE},
    concat('GPU-', toString({g})), toDateTime64('{day} 00:00:00', 3, 'UTC') + {t},
    u, intDiv(u, 2), if(u > 0 OR {phase} = 2, (1 + {g} % 4) * 10737418240, 0),
    85899345920 - if(u > 0 OR {phase} = 2, (1 + {g} % 4) * 10737418240, 0), 536870912,
    toUInt32(70000 + u * 3000), toUInt64({t}) * 250000 + {g} * 1000000000,
    toInt16(35 + intDiv(u, 3)), toInt16(40 + intDiv(u, 3)), if(u > 0, 1980, 210), 2619, 0,
    toFloat32(u * 0.009), toFloat32(if(u > 10, u * 0.005, 0)), 0, 0, false, false
FROM (SELECT number, {util} AS u FROM numbers({gpus * seconds}))
"""


def rollup_sql(day: str) -> str:
    """Per-minute windows from the raw samples, with the job of each node-hour."""
    node = "toUInt32(substring(node, 2))"
    phase = _phase(node, "toUInt32(intDiv(toUnixTimestamp(window_start) - "
                         f"toUnixTimestamp(toDateTime('{day}', 'UTC')), 3600))")
    job = "concat('job-', node, '-', toString(toHour(window_start)))"
    return f"""
INSERT INTO gpu_util_1m (cluster, node, gpu, uuid, window_start, window_s, samples, util_mean,
    util_min, util_max, util_p95, mem_used_bytes_mean, power_mw_mean, energy_mj, job_id, tenant)
SELECT cluster, node, gpu, uuid, window_start, 60, samples, util_mean, util_min, util_max,
    util_p95, mem_used_bytes_mean, power_mw_mean, energy_mj,
    if({phase} >= 2, {job}, NULL), if({phase} >= 2, concat('t', toString({phase})), NULL)
FROM
(
    SELECT cluster, node, gpu, any(uuid) AS uuid, toStartOfMinute(ts) AS window_start,
        count() AS samples, avg(util_gpu) AS util_mean, min(util_gpu) AS util_min,
        max(util_gpu) AS util_max, quantile(0.95)(util_gpu) AS util_p95,
        avg(mem_used_bytes) AS mem_used_bytes_mean, avg(power_mw) AS power_mw_mean,
        max(energy_mj) - min(energy_mj) AS energy_mj
    FROM gpu_samples WHERE cluster = 'bench'
    GROUP BY cluster, node, gpu, window_start
)
"""


def nodes_sql(gpus: int, day: str) -> str:
    return f"""
INSERT INTO nodes (cluster, node, gpu, uuid, model, memory_total_bytes, ts)
SELECT 'bench', concat('n', leftPad(toString(intDiv(number, {GPUS_PER_NODE})), 4, '0')),
    number % {GPUS_PER_NODE}, concat('GPU-', toString(number)),
    ['{"','".join(MODELS)}'][1 + intDiv(number, {GPUS_PER_NODE}) % {len(MODELS)}],
    85899345920, toDateTime64('{day} 00:00:00', 3, 'UTC')
FROM numbers({gpus})
"""
