SELECT p.name, (ml.sentiment(r.body)).label FROM reviews r JOIN products p ON p.product = r.product
