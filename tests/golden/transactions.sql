-- A transaction over two tables comes out whole and in order; a rolled-back one emits nothing.
CREATE TABLE golden.accounts (id INT PRIMARY KEY, balance DECIMAL(10,2) NOT NULL);
-> {"ddl": "create", "table": "accounts"}
CREATE TABLE golden.ledger (id BIGINT UNSIGNED PRIMARY KEY AUTO_INCREMENT, account INT NOT NULL, amount DECIMAL(10,2) NOT NULL);
-> {"ddl": "create", "table": "ledger"}
INSERT INTO golden.accounts VALUES (1, 100.00), (2, 0.00);
-> {"op": "c", "table": "accounts", "key": {"id": 1}, "after": {"id": 1, "balance": "100.00"}}
-> {"op": "c", "table": "accounts", "key": {"id": 2}, "after": {"id": 2, "balance": "0.00"}}
BEGIN;
UPDATE golden.accounts SET balance = balance - 25.50 WHERE id = 1;
UPDATE golden.accounts SET balance = balance + 25.50 WHERE id = 2;
INSERT INTO golden.ledger (account, amount) VALUES (1, -25.50), (2, 25.50);
COMMIT;
-> {"op": "u", "table": "accounts", "key": {"id": 1}, "after": {"id": 1, "balance": "74.50"}}
-> {"op": "u", "table": "accounts", "key": {"id": 2}, "after": {"id": 2, "balance": "25.50"}}
-> {"op": "c", "table": "ledger", "key": {"id": 1}, "after": {"id": 1, "account": 1, "amount": "-25.50"}}
-> {"op": "c", "table": "ledger", "key": {"id": 2}, "after": {"id": 2, "account": 2, "amount": "25.50"}}
BEGIN;
UPDATE golden.accounts SET balance = 0 WHERE id = 1;
INSERT INTO golden.ledger (account, amount) VALUES (1, -74.50);
ROLLBACK;
INSERT INTO golden.ledger (account, amount) VALUES (2, 0.01);
-> {"op": "c", "table": "ledger", "key": {"id": 4}, "after": {"id": 4, "account": 2, "amount": "0.01"}}
