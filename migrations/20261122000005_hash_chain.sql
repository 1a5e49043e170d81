-- Tamper evidence: each event carries SHA-256 over its predecessor's hash (in its stream) and
-- its own identity and content, so an edited or deleted row breaks the chain that
-- `promptcards verify` walks. Computed by the event store's append.
ALTER TABLE events ADD COLUMN hash text;
