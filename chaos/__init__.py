"""The fault suite: the whole stack on free ports under steady load, faults one after another,
then the invariants checked over what the bus and the warehouse hold (``python -m chaos``).

Layout: ``config`` (sizes and durations, two profiles), ``stack`` (the broker or a 3-broker
cluster, and every service under a supervisor), ``load`` (job submissions through the api and
probe samples with known acknowledgements), ``faults`` (what is done to the stack),
``history`` (what the topics and the warehouse hold afterwards), ``check`` (the invariants, pure
functions over that history) and ``report`` (the table and the last line).
"""
