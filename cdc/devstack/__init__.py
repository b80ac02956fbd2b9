"""The local dev stack: MariaDB (binlog on), Apache Kafka (KRaft) and PostgreSQL as plain processes.

Used by the demo and the integration tests; never by the daemon itself.
"""
