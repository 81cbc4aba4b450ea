SELECT lead_id, ml.churn(tenure, plan) FROM leads
