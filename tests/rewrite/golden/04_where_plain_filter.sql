SELECT review_id, (ml.sentiment(body)).label FROM reviews WHERE product = 'p1' AND stars > 2
