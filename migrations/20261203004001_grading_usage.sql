-- What grading models used for each result (model-graded assertions), apart from the tested
-- call's tokens and cost. Results recorded before graders existed used none.
ALTER TABLE read.test_results
    ADD COLUMN grading_prompt_tokens     integer NOT NULL DEFAULT 0,
    ADD COLUMN grading_completion_tokens integer NOT NULL DEFAULT 0,
    ADD COLUMN grading_cost_micro_usd    bigint  NOT NULL DEFAULT 0;
