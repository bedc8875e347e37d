-- What a model's developer says about it (SINGA-Auto's client sends `model_description`).
ALTER TABLE models ADD COLUMN description text;
