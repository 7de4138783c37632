"""The warehouse: the ClickHouse schema (numbered migrations) and, for one machine, an embedded
chDB database served over the ClickHouse HTTP interface."""
