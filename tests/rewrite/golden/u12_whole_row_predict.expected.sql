-- unchanged: ml.predict over a whole row (write to_jsonb(t))
SELECT
  lead_id,
  ml.predict('lead_score', leads)
FROM leads
