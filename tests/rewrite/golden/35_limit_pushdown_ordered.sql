SELECT review_id, (ml.sentiment(body)).label FROM reviews ORDER BY review_id LIMIT 5
