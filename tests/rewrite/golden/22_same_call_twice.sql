SELECT (ml.sentiment(body)).label, (ml.sentiment(body)).confidence FROM reviews WHERE (ml.sentiment(body)).confidence > 0.3
