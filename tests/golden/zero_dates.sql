-- Zero dates follow source.zero_dates; the default ("null") makes them null.
SET SESSION sql_mode = '';
CREATE TABLE golden.z (id INT PRIMARY KEY, d DATE, dtm DATETIME);
-> {"ddl": "create", "table": "z"}
INSERT INTO golden.z VALUES (1, '0000-00-00', '0000-00-00 00:00:00'), (2, '2024-01-02', '2024-01-02 03:04:05');
-> {"op": "c", "table": "z", "key": {"id": 1}, "after": {"id": 1, "d": null, "dtm": null}}
-> {"op": "c", "table": "z", "key": {"id": 2}, "after": {"id": 2, "d": "2024-01-02", "dtm": "2024-01-02T03:04:05"}}
