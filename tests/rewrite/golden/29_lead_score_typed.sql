SELECT lead_id, ml.lead_score(mostype, maanthui, mgemomv) FROM leads
