WITH scored AS (SELECT review_id, (ml.sentiment(body)).label AS label FROM reviews) SELECT label, count(*) FROM scored GROUP BY label
