"""MariaDB binlog source."""
