"""The simulator: the policy core driven by a cluster trace, with no Kafka."""
