"""Change sources: readers that turn a database's log into ``cdc.core`` records."""
