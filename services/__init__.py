"""The gpufleet services. Each is a package of the same small shape:

``config`` (its frozen settings), ``core`` (pure logic: values in, values out), ``driver``
(the thin part that wires the core to Kafka and the warehouse) and ``__main__`` (the command).
"""
