SELECT lead_id, ml.predict('lead_score', jsonb_build_object('mostype', mostype, 'maanthui', maanthui)) AS p FROM leads
