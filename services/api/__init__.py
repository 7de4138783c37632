"""The status API, the web dashboard and the command-line client of gpufleet."""
