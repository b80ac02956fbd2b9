-- Every MariaDB column type, faithfully, in the JSON mapping of cdc/stream/json_values.py.
-- GEOMETRY is sent as standard WKB (MariaDB stores a 4-byte SRID before it; that prefix is dropped).
-- The harness runs with time_zone '+00:00', so TIMESTAMP text is UTC.
CREATE TABLE golden.types (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  d DECIMAL(65,30), d2 DECIMAL(5,2), f FLOAT, db DOUBLE, b1 BIT(1), b12 BIT(12),
  dt DATE, dtm DATETIME, dtm6 DATETIME(6), ts3 TIMESTAMP(3) NULL, tm TIME, tm6 TIME(6), y YEAR,
  u8 VARCHAR(20) CHARACTER SET utf8mb4, l1 VARCHAR(20) CHARACTER SET latin1, c CHAR(3) CHARACTER SET utf8mb4,
  txt TEXT CHARACTER SET utf8mb4, bin BINARY(4), vb VARBINARY(10), bl BLOB,
  e ENUM('small', 'large'), st SET('a', 'b', 'c'), j JSON, g GEOMETRY, uu UUID, i4 INET4, i6 INET6
);
-> {"ddl": "create", "table": "types"}
INSERT INTO golden.types VALUES (1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615, '99999999999999999999999999999999999.999999999999999999999999999999', 123.45, 1.5, 0.1, b'1', b'101010101010', '2024-02-29', '2024-02-29 13:45:01', '2024-02-29 13:45:01.123456', '2024-02-29 13:45:01.250', '-838:59:59', '25:00:00.000001', 2024, '😀 ok', 'café', 'ab', 'long text ✓', 'ab', x'00ff10', 'blob', 'large', 'a,c', '{"k": [1, 2]}', ST_GeomFromText('POINT(1 2)'), '123e4567-e89b-12d3-a456-426614174000', '192.168.0.1', '2001:db8::1');
-> {"op": "c", "table": "types", "key": {"id": 1}, "after": {"id": 1, "ti": 127, "tiu": 255, "si": 32767, "siu": 65535, "mi": 8388607, "miu": 16777215, "i": 2147483647, "iu": 4294967295, "bi": 9223372036854775807, "biu": 18446744073709551615, "d": "99999999999999999999999999999999999.999999999999999999999999999999", "d2": "123.45", "f": 1.5, "db": 0.1, "b1": 1, "b12": 2730, "dt": "2024-02-29", "dtm": "2024-02-29T13:45:01", "dtm6": "2024-02-29T13:45:01.123456", "ts3": "2024-02-29T13:45:01.250Z", "tm": "-838:59:59", "tm6": "25:00:00.000001", "y": 2024, "u8": "😀 ok", "l1": "café", "c": "ab", "txt": "long text ✓", "bin": "YWIAAA==", "vb": "AP8Q", "bl": "YmxvYg==", "e": "large", "st": "a,c", "j": "{\"k\": [1, 2]}", "g": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "uu": "123e4567-e89b-12d3-a456-426614174000", "i4": "192.168.0.1", "i6": "2001:db8::1"}}
INSERT INTO golden.types (id) VALUES (2);
-> {"op": "c", "table": "types", "key": {"id": 2}, "after": {"id": 2, "ti": null, "tiu": null, "si": null, "siu": null, "mi": null, "miu": null, "i": null, "iu": null, "bi": null, "biu": null, "d": null, "d2": null, "f": null, "db": null, "b1": null, "b12": null, "dt": null, "dtm": null, "dtm6": null, "ts3": null, "tm": null, "tm6": null, "y": null, "u8": null, "l1": null, "c": null, "txt": null, "bin": null, "vb": null, "bl": null, "e": null, "st": null, "j": null, "g": null, "uu": null, "i4": null, "i6": null}}
INSERT INTO golden.types (id, ti, tiu, si, mi, i, bi, biu, d, d2, f, db, b12, dt, dtm6, ts3, tm, tm6, y, u8, vb, st) VALUES (3, -128, 0, -32768, -8388608, -2147483648, -9223372036854775808, 0, '-99999999999999999999999999999999999.999999999999999999999999999999', -0.05, -1.5, -1e300, b'0', '1000-01-01', '9999-12-31 23:59:59.999999', '1970-01-01 00:00:01.000', '838:59:59', '-00:00:00.000001', 1901, '', '', '');
-> {"partial": true, "op": "c", "table": "types", "key": {"id": 3}, "after": {"id": 3, "ti": -128, "tiu": 0, "si": -32768, "mi": -8388608, "i": -2147483648, "bi": -9223372036854775808, "biu": 0, "d": "-99999999999999999999999999999999999.999999999999999999999999999999", "d2": "-0.05", "f": -1.5, "db": -1e300, "b12": 0, "dt": "1000-01-01", "dtm6": "9999-12-31T23:59:59.999999", "ts3": "1970-01-01T00:00:01.000Z", "tm": "838:59:59", "tm6": "-00:00:00.000001", "y": 1901, "u8": "", "vb": "", "st": ""}}
UPDATE golden.types SET biu = 1, u8 = NULL WHERE id = 1;
-> {"partial": true, "op": "u", "table": "types", "key": {"id": 1}, "before": {"biu": 18446744073709551615, "u8": "😀 ok"}, "after": {"biu": 1, "u8": null}}
