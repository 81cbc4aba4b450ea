SELECT p.name FROM products p JOIN reviews r ON r.product = p.product AND (ml.sentiment(r.body)).label = 'positive'
