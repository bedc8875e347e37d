-- A checkpoint (SINGA-Auto's name): trained parameters uploaded with a Python template, so the
-- template serves without a train job (docs/serving.md). Stored beside the template's source.
ALTER TABLE models ADD COLUMN checkpoint_path text;
ALTER TABLE models ADD COLUMN checkpoint_sha256 text;
ALTER TABLE models ADD COLUMN checkpoint_size_bytes bigint;
ALTER TABLE models ADD CONSTRAINT models_checkpoint_whole
    CHECK ((checkpoint_path IS NULL) = (checkpoint_sha256 IS NULL)
       AND (checkpoint_path IS NULL) = (checkpoint_size_bytes IS NULL));
