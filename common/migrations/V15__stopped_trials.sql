-- Trials ended early by the budget's EARLY_STOPPING rule (scored with their last report).
ALTER TYPE trial_status ADD VALUE IF NOT EXISTS 'STOPPED';

-- The train worker's early stopping reads the reports (METRICS logs) of completed trials.
GRANT SELECT ON trial_logs TO duma_train_worker;
