SELECT review_id, body FROM reviews ORDER BY review_id
