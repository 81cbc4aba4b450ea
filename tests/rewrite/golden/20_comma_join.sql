SELECT p.name, (ml.sentiment(r.body)).label FROM reviews r, products p WHERE p.product = r.product
