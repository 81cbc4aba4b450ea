SELECT review_id FROM reviews WHERE (ml.sentiment(body)).label = 'positive'
