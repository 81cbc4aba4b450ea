SELECT lead_id, ml.lead_score(mostype, maanthui, mgemomv) AS score FROM leads ORDER BY score DESC NULLS LAST, lead_id
