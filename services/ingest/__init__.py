"""Ingest: GPU samples and job events from Kafka into ClickHouse, per-minute utilization
windows, job attribution and idle-GPU alerts."""
