-- TRUNCATE is op t (no key, no images); DDL mid-stream changes the rows that follow.
CREATE TABLE golden.t (id INT PRIMARY KEY, a INT);
-> {"ddl": "create", "table": "t"}
INSERT INTO golden.t VALUES (1, 10), (2, 20);
-> {"op": "c", "table": "t", "key": {"id": 1}, "after": {"id": 1, "a": 10}}
-> {"op": "c", "table": "t", "key": {"id": 2}, "after": {"id": 2, "a": 20}}
TRUNCATE TABLE golden.t;
-> {"op": "t", "table": "t", "key": null, "before": null, "after": null}
ALTER TABLE golden.t ADD COLUMN b VARCHAR(5) NULL AFTER a;
-> {"ddl": "alter", "table": "t"}
INSERT INTO golden.t VALUES (3, 30, 'x');
-> {"op": "c", "table": "t", "key": {"id": 3}, "after": {"id": 3, "a": 30, "b": "x"}}
ALTER TABLE golden.t MODIFY a BIGINT;
-> {"ddl": "alter", "table": "t"}
UPDATE golden.t SET a = 9223372036854775807 WHERE id = 3;
-> {"op": "u", "table": "t", "key": {"id": 3}, "before": {"id": 3, "a": 30, "b": "x"}, "after": {"id": 3, "a": 9223372036854775807, "b": "x"}}
RENAME TABLE golden.t TO golden.t2;
-> {"ddl": "rename", "table": "t"}
INSERT INTO golden.t2 VALUES (4, 40, 'y');
-> {"op": "c", "table": "t2", "key": {"id": 4}, "after": {"id": 4, "a": 40, "b": "y"}}
DROP TABLE golden.t2;
-> {"ddl": "drop", "table": "t2"}
