SELECT review_id, ml.sentiment(body) IS NULL AS missing FROM reviews WHERE body IS NULL OR body = ''
