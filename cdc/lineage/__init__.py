"""OpenLineage run events of the daemons (`cdc run`, `cdc sink`), through ``openlineage-python``."""
