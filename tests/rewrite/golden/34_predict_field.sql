SELECT lead_id, ml.predict('lead_score', to_jsonb(l)) ->> 'probability' AS p FROM leads l
