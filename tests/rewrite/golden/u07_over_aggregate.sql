SELECT product, ml.sentiment(string_agg(body, ' ' ORDER BY review_id)) FROM reviews GROUP BY product
