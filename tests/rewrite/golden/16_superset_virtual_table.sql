SELECT label, COUNT(*) AS count FROM (SELECT product, (ml.sentiment(body)).label AS label FROM reviews) AS virtual_table GROUP BY label ORDER BY count DESC, label LIMIT 10000
