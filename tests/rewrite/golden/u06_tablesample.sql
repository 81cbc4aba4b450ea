SELECT (ml.sentiment(body)).label FROM reviews TABLESAMPLE SYSTEM (50)
