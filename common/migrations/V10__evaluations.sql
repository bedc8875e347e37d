-- Evaluations: the trials that serve one version of an app (its best per model, ensembled as the
-- predictor does), scored offline by a train worker on a labelled dataset (docs/deployments.md).
-- `metrics` holds the task's scores (scikit-learn's definitions); `worker_id` the train worker
-- running it, so the reconciler can end one whose worker died.
CREATE TABLE evaluations (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id),
    dataset_id       uuid NOT NULL REFERENCES datasets (id),
    train_job_id     uuid NOT NULL REFERENCES train_jobs (id),
    app              text NOT NULL,
    app_version      integer NOT NULL,
    -- The deployment it was asked for by, if any (kept as a name: deployments come and go).
    deployment       text,
    trial_ids        uuid[] NOT NULL,
    task             text NOT NULL,
    status           text NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'ERRORED')),
    metrics          jsonb,
    rows             integer,
    duration_secs    double precision,
    error            text,
    worker_id        uuid,
    datetime_created timestamptz NOT NULL DEFAULT now(),
    datetime_started timestamptz,
    datetime_stopped timestamptz
);
CREATE INDEX evaluations_pending ON evaluations (datetime_created) WHERE status = 'PENDING';
CREATE INDEX evaluations_app ON evaluations (user_id, app, app_version);

GRANT SELECT, INSERT, UPDATE ON evaluations TO duma_admin;
GRANT SELECT, UPDATE         ON evaluations TO duma_train_worker;
