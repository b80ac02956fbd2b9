-- Inserts, updates and deletes, one statement per transaction (autocommit).
CREATE TABLE golden.items (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, qty INT NULL) DEFAULT CHARSET=utf8mb4;
-> {"ddl": "create", "table": "items"}
INSERT INTO golden.items VALUES (1, 'apple', 3);
-> {"op": "c", "table": "items", "key": {"id": 1}, "before": null, "after": {"id": 1, "name": "apple", "qty": 3}}
UPDATE golden.items SET qty = 4 WHERE id = 1;
-> {"op": "u", "table": "items", "key": {"id": 1}, "before": {"id": 1, "name": "apple", "qty": 3}, "after": {"id": 1, "name": "apple", "qty": 4}}
-- A primary-key change is a delete of the old key, then a create of the new key (as Debezium emits it).
UPDATE golden.items SET id = 2 WHERE id = 1;
-> {"op": "d", "table": "items", "key": {"id": 1}, "before": {"id": 1, "name": "apple", "qty": 4}, "after": null}
-> {"op": "c", "table": "items", "key": {"id": 2}, "before": null, "after": {"id": 2, "name": "apple", "qty": 4}}
UPDATE golden.items SET qty = 4 WHERE id = 2;
DELETE FROM golden.items WHERE id = 2;
-> {"op": "d", "table": "items", "key": {"id": 2}, "before": {"id": 2, "name": "apple", "qty": 4}, "after": null}
INSERT INTO golden.items VALUES (3, 'pear', NULL);
-> {"op": "c", "table": "items", "key": {"id": 3}, "after": {"id": 3, "name": "pear", "qty": null}}
