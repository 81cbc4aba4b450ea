-- Small demo-like tables with the awkward cases: NULLs, duplicates, empty strings, ties.
CREATE TABLE reviews (review_id integer PRIMARY KEY, product text, body text, stars integer);
INSERT INTO reviews
SELECT i,
       'p' || (i % 4),
       CASE WHEN i % 11 = 0 THEN NULL
            WHEN i % 13 = 0 THEN ''
            ELSE repeat('good ', i % 5) || 'food ' || (i % 9) END,
       CASE WHEN i % 17 = 0 THEN NULL ELSE i % 5 + 1 END
FROM generate_series(1, 60) AS i;
CREATE TABLE leads (lead_id integer PRIMARY KEY, mostype bigint, maanthui bigint, mgemomv bigint, tenure bigint, plan text);
INSERT INTO leads
SELECT i,
       CASE WHEN i % 10 = 0 THEN NULL ELSE i % 7 END,
       i % 3,
       (i * 7) % 5,
       i % 24,
       CASE WHEN i % 9 = 0 THEN NULL ELSE (ARRAY['basic', 'plus', 'pro'])[i % 3 + 1] END
FROM generate_series(1, 40) AS i;
CREATE TABLE products (product text PRIMARY KEY, name text);
INSERT INTO products VALUES ('p0', 'apples'), ('p1', 'bread'), ('p2', 'coffee'), ('p3', 'dates'), ('p4', 'eggs');
