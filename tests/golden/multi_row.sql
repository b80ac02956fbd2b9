-- Multi-row statements: one binlog event carries several rows; each becomes its own change.
CREATE TABLE golden.t (id INT PRIMARY KEY, v VARCHAR(10)) DEFAULT CHARSET=utf8mb4;
-> {"ddl": "create", "table": "t"}
INSERT INTO golden.t VALUES (1, 'a'), (2, 'b'), (3, 'c');
-> {"op": "c", "table": "t", "key": {"id": 1}, "after": {"id": 1, "v": "a"}}
-> {"op": "c", "table": "t", "key": {"id": 2}, "after": {"id": 2, "v": "b"}}
-> {"op": "c", "table": "t", "key": {"id": 3}, "after": {"id": 3, "v": "c"}}
UPDATE golden.t SET v = CONCAT(v, v) WHERE id >= 2;
-> {"op": "u", "table": "t", "key": {"id": 2}, "before": {"id": 2, "v": "b"}, "after": {"id": 2, "v": "bb"}}
-> {"op": "u", "table": "t", "key": {"id": 3}, "before": {"id": 3, "v": "c"}, "after": {"id": 3, "v": "cc"}}
DELETE FROM golden.t WHERE id <= 2;
-> {"op": "d", "table": "t", "key": {"id": 1}, "before": {"id": 1, "v": "a"}}
-> {"op": "d", "table": "t", "key": {"id": 2}, "before": {"id": 2, "v": "bb"}}
