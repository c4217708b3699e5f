-- Keyset pages of the console's registry, newest issue first.
CREATE INDEX certificates_issued_number ON certificates (issued_at, number);
CREATE INDEX certificates_revoked ON certificates (revoked_at);
