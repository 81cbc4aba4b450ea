SELECT lead_id, (ml.churn(tenure, plan)).churned, (ml.churn(tenure, plan)).probability FROM leads
