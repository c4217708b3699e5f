-- Substring search over a large registry: a trigram index serves `search_text LIKE '%…%'`
-- (pg_trgm ships with PostgreSQL and is a trusted extension). Where it cannot be installed, search
-- still works, scanning the narrow (search_text, number) index instead.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX IF NOT EXISTS certificates_search_trgm
        ON certificates USING gin (search_text gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%): registry search scans instead', SQLERRM;
END
$$;

-- One event's certificates in number order, whatever other filters narrow them.
CREATE INDEX IF NOT EXISTS certificates_event_number ON certificates (event_id, number);
