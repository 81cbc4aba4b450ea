SELECT ml.sentiment(my_clean(body)) FROM reviews
