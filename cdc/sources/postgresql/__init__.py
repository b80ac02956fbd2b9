"""The PostgreSQL source: logical replication with the pgoutput plugin (docs/postgresql.md).

``values`` maps PostgreSQL types to the Arrow vocabulary and parses their text form; ``pgoutput``
decodes the plugin's messages into SourceRecords; ``server`` checks the server and manages the slot
and the publication; ``reader`` drives the replication connection.
"""
