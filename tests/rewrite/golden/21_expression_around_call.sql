SELECT review_id, upper((ml.sentiment(body)).label) || '!' AS shout, round(CAST((ml.sentiment(body)).confidence AS numeric), 2) AS c FROM reviews
