-- A label move made by a command caused by another (a comparison promoting its candidate)
-- names that cause, from the event's causation_id.
ALTER TABLE read.label_moves ADD COLUMN cause_id uuid;
