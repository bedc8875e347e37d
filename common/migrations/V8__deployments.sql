-- Deployments: named, long-lived endpoints of one app (docs/deployments.md). `routes` is what
-- takes traffic now: [{"app_version", "inference_job_id", "weight", "shadow"}]; `pending` what
-- will once its inference jobs run; `previous` what took traffic before the last switch (for
-- rollback); `retiring` the inference jobs to stop once their requests in flight are done:
-- [{"inference_job_id", "after"}].
CREATE TABLE deployments (
    id               uuid PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    user_id          uuid NOT NULL REFERENCES users (id),
    app              text NOT NULL,
    service_level    text NOT NULL
        CHECK (service_level IN ('development', 'staging', 'production')),
    routes           jsonb NOT NULL DEFAULT '[]',
    pending          jsonb,
    previous         jsonb,
    retiring         jsonb NOT NULL DEFAULT '[]',
    error            text,
    datetime_created timestamptz NOT NULL DEFAULT now(),
    datetime_updated timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployments_user ON deployments (user_id, name);

GRANT SELECT, INSERT, UPDATE, DELETE ON deployments TO duma_admin;
GRANT SELECT ON deployments TO duma_predictor;
