-- What a trained tabular version takes and answers (features and their types, target, classes in
-- probability order), recorded by the train worker from the training data: the Open Inference
-- Protocol's model metadata and the admin's train job view show it.
ALTER TABLE train_jobs ADD COLUMN metadata jsonb;
