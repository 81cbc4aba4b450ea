SELECT name, (SELECT max((ml.sentiment(body)).confidence) FROM reviews WHERE reviews.product = products.product) FROM products
