"""GPU telemetry: read every GPU of a node (NVML or simulated) and publish one sample per tick."""
