SELECT v.label, count(*) FROM (SELECT (ml.sentiment(body)).label AS label FROM reviews) AS v GROUP BY v.label
