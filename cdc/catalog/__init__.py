"""`cdc catalog`: every table of every pipeline with owner, schema versions, lineage, SLO and lag.

Above the vocabulary and the sinks, beside the daemon: it reads what the pipelines already keep
(the schema topic, the sinks' own tables, the state directory), and never writes to any of them.
"""
