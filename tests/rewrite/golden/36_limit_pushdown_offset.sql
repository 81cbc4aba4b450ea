SELECT review_id, product, ml.lead_score(1, 2, review_id) AS score FROM reviews WHERE stars > 1 ORDER BY review_id DESC LIMIT 7 OFFSET 3
