SELECT p.name FROM products p WHERE p.product IN (SELECT r.product FROM reviews r WHERE (ml.sentiment(r.body)).label = 'negative')
