SELECT lead_id, ml.predict('lead_score', leads) FROM leads
