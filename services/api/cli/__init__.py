"""Command-line clients of the api: ``gpufleet submit|jobs|cancel|status|top``."""
