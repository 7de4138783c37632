"""The scheduler: a pluggable placement core, its Kafka service and a trace simulator."""
