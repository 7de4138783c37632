"""The fleet simulator: many simulated GPU nodes (telemetry + executor each) in one process."""
