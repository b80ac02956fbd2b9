-- ROLLBACK TO SAVEPOINT in a transaction that also wrote a MyISAM table: MariaDB logs the undone
-- InnoDB rows and the rollback; only what the source kept comes out. A key change is d then c;
-- an update of a keyless table stays u (its Kafka key is the whole row).
CREATE TABLE golden.page (id INT PRIMARY KEY, title VARCHAR(20) NOT NULL) ENGINE=InnoDB;
-> {"ddl": "create", "table": "page"}
CREATE TABLE golden.searchindex (id INT PRIMARY KEY, words VARCHAR(20) NOT NULL) ENGINE=MyISAM;
-> {"ddl": "create", "table": "searchindex"}
CREATE TABLE golden.log (a INT, b INT) ENGINE=InnoDB;
-> {"ddl": "create", "table": "log"}
BEGIN;
INSERT INTO golden.page VALUES (1, 'Main');
INSERT INTO golden.searchindex VALUES (1, 'main page');
SAVEPOINT atomic1;
INSERT INTO golden.page VALUES (2, 'Phantom');
UPDATE golden.page SET title = 'Gone' WHERE id = 1;
ROLLBACK TO SAVEPOINT atomic1;
INSERT INTO golden.page VALUES (3, 'Kept');
COMMIT;
-> {"op": "c", "table": "searchindex", "key": {"id": 1}, "after": {"id": 1, "words": "main page"}}
-> {"op": "c", "table": "page", "key": {"id": 1}, "after": {"id": 1, "title": "Main"}}
-> {"op": "c", "table": "page", "key": {"id": 3}, "after": {"id": 3, "title": "Kept"}}
BEGIN;
SAVEPOINT atomic2;
INSERT INTO golden.searchindex VALUES (2, 'phantom');
INSERT INTO golden.page VALUES (4, 'Phantom');
ROLLBACK TO SAVEPOINT atomic2;
COMMIT;
-> {"op": "c", "table": "searchindex", "key": {"id": 2}, "after": {"id": 2, "words": "phantom"}}
UPDATE golden.page SET id = id + 10 ORDER BY id DESC;
-> {"op": "d", "table": "page", "key": {"id": 3}, "before": {"id": 3, "title": "Kept"}, "after": null}
-> {"op": "c", "table": "page", "key": {"id": 13}, "before": null, "after": {"id": 13, "title": "Kept"}}
-> {"op": "d", "table": "page", "key": {"id": 1}, "before": {"id": 1, "title": "Main"}, "after": null}
-> {"op": "c", "table": "page", "key": {"id": 11}, "before": null, "after": {"id": 11, "title": "Main"}}
INSERT INTO golden.log VALUES (1, 1);
-> {"op": "c", "table": "log", "after": {"a": 1, "b": 1}}
UPDATE golden.log SET a = 2;
-> {"op": "u", "table": "log", "before": {"a": 1, "b": 1}, "after": {"a": 2, "b": 1}}
