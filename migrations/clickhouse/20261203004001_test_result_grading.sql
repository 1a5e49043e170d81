-- Grading usage of model-graded assertions, apart from the tested call's tokens and cost.
-- Rows written before it read as 0. ClickHouse 18 has no ADD COLUMN IF NOT EXISTS: the
-- projector's migrate skips an ADD COLUMN whose column already exists, keeping this idempotent.
ALTER TABLE {database}.test_results ADD COLUMN grading_prompt_tokens UInt32 DEFAULT 0;
ALTER TABLE {database}.test_results ADD COLUMN grading_completion_tokens UInt32 DEFAULT 0;
ALTER TABLE {database}.test_results ADD COLUMN grading_cost_micro_usd Int64 DEFAULT 0;
