-- Models served without training (docs/serving.md): an uploaded ONNX file records the tensors it
-- takes and answers (`signature`), and serving one makes a version of an app whose train job
-- trained nothing: no datasets, one COMPLETED trial whose parameters are the uploaded file.
ALTER TABLE models ADD COLUMN signature jsonb;
ALTER TABLE train_jobs ALTER COLUMN train_dataset_id DROP NOT NULL;
ALTER TABLE train_jobs ALTER COLUMN val_dataset_id DROP NOT NULL;
ALTER TABLE train_jobs ADD CONSTRAINT train_jobs_datasets_together
    CHECK ((train_dataset_id IS NULL) = (val_dataset_id IS NULL));

GRANT INSERT ON trials TO duma_admin;
-- The predictor answers the Open Inference Protocol's model metadata from the signature.
GRANT SELECT (id, template_kind, signature) ON models TO duma_predictor;
