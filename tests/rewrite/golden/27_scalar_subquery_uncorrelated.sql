SELECT name, (SELECT count(*) FROM reviews r WHERE (ml.sentiment(r.body)).label = 'positive') AS positives FROM products
