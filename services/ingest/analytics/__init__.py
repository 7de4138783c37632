"""Stream analytics of ingest: idle GPUs, reclaim, health drains and right-sizing.

Pure cores by domain (``idle``, ``reclaim``, ``health``, ``rightsizing``; ``jobs`` and
``policy`` feed them), composed by ``core.Analytics`` over typed mappings, and run by the
faust-streaming app in ``app`` with its state in changelogged tables.
"""
