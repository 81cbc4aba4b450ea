SELECT name FROM products WHERE product IN (SELECT product FROM reviews WHERE (ml.sentiment(body)).label = 'negative')
