-- Counters per status and the search scan read narrow indexes instead of whole rows.
CREATE INDEX certificates_status_revoked ON certificates (status, revoked_at);
CREATE INDEX certificates_search ON certificates (search_text, number);
