-- Duma metadata schema: the whole system of DESIGN.md in one place.

CREATE TYPE user_type AS ENUM ('SUPERADMIN', 'ADMIN', 'MODEL_DEVELOPER', 'APP_DEVELOPER');
CREATE TYPE job_status AS ENUM ('STARTED', 'RUNNING', 'STOPPED', 'ERRORED');
CREATE TYPE trial_status AS ENUM ('PENDING', 'RUNNING', 'COMPLETED', 'ERRORED');
CREATE TYPE access_right AS ENUM ('PRIVATE', 'PUBLIC');
CREATE TYPE template_kind AS ENUM ('native', 'python', 'onnx');
CREATE TYPE trial_log_kind AS ENUM ('MESSAGE', 'METRICS', 'PLOT');
CREATE TYPE worker_kind AS ENUM ('ADVISOR', 'TRAIN', 'INFERENCE', 'PREDICTOR');
CREATE TYPE lease_kind AS ENUM ('ADVISE', 'TRAIN', 'SERVE');

CREATE TABLE users (
    id               uuid PRIMARY KEY,
    email            text NOT NULL,
    password_hash    text NOT NULL,
    user_type        user_type NOT NULL,
    datetime_created timestamptz NOT NULL DEFAULT now(),
    banned_date      timestamptz
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE datasets (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id),
    name             text NOT NULL,
    task             text NOT NULL,
    store_path       text NOT NULL,
    size_bytes       bigint NOT NULL CHECK (size_bytes >= 0),
    sha256           text NOT NULL CHECK (length(sha256) = 64),
    datetime_created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX datasets_user_task ON datasets (user_id, task, datetime_created DESC);

CREATE TABLE models (
    id                uuid PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id),
    name              text NOT NULL,
    task              text NOT NULL,
    template_kind     template_kind NOT NULL,
    -- Object-store location of the uploaded source; NULL for built-in (native) templates.
    source_path       text,
    source_sha256     text,
    source_size_bytes bigint,
    model_class       text NOT NULL,
    -- Read from the template when a train job first uses it (uploads are not validated).
    knob_config       jsonb,
    dependencies      jsonb NOT NULL DEFAULT '{}',
    access_right      access_right NOT NULL DEFAULT 'PRIVATE',
    docker_image      text,
    datetime_created  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT models_user_name_key UNIQUE (user_id, name),
    CONSTRAINT models_source_present CHECK (template_kind = 'native' OR source_path IS NOT NULL)
);
CREATE INDEX models_task_access ON models (task, access_right);

CREATE TABLE train_jobs (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id),
    app              text NOT NULL,
    app_version      integer NOT NULL CHECK (app_version > 0),
    task             text NOT NULL,
    train_dataset_id uuid NOT NULL REFERENCES datasets (id),
    val_dataset_id   uuid NOT NULL REFERENCES datasets (id),
    budget           jsonb NOT NULL,
    train_args       jsonb NOT NULL DEFAULT '{}',
    status           job_status NOT NULL DEFAULT 'STARTED',
    error            text,
    datetime_started timestamptz NOT NULL DEFAULT now(),
    datetime_stopped timestamptz,
    CONSTRAINT train_jobs_app_version_key UNIQUE (user_id, app, app_version)
);
-- At most one live train job per (user, app): the database settles concurrent creations.
CREATE UNIQUE INDEX train_jobs_one_live_per_app ON train_jobs (user_id, app)
    WHERE status IN ('STARTED', 'RUNNING');
CREATE INDEX train_jobs_live ON train_jobs (status) WHERE status IN ('STARTED', 'RUNNING');

-- One per model of a train job: the unit the advisor tunes and train workers run trials of.
CREATE TABLE sub_train_jobs (
    id               uuid PRIMARY KEY,
    train_job_id     uuid NOT NULL REFERENCES train_jobs (id) ON DELETE CASCADE,
    model_id         uuid NOT NULL REFERENCES models (id),
    status           job_status NOT NULL DEFAULT 'STARTED',
    error            text,
    datetime_started timestamptz NOT NULL DEFAULT now(),
    datetime_stopped timestamptz,
    CONSTRAINT sub_train_jobs_model_key UNIQUE (train_job_id, model_id)
);
CREATE INDEX sub_train_jobs_model ON sub_train_jobs (model_id);
CREATE INDEX sub_train_jobs_live ON sub_train_jobs (status) WHERE status IN ('STARTED', 'RUNNING');

CREATE TABLE workers (
    id               uuid PRIMARY KEY,
    kind             worker_kind NOT NULL,
    host             text NOT NULL,
    capabilities     jsonb NOT NULL DEFAULT '{}',
    datetime_started timestamptz NOT NULL DEFAULT now(),
    last_heartbeat   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_kind_heartbeat ON workers (kind, last_heartbeat);

CREATE TABLE trials (
    id                uuid PRIMARY KEY,
    sub_train_job_id  uuid NOT NULL REFERENCES sub_train_jobs (id) ON DELETE CASCADE,
    no                integer NOT NULL CHECK (no > 0),
    model_id          uuid NOT NULL REFERENCES models (id),
    worker_id         uuid REFERENCES workers (id) ON DELETE SET NULL,
    proposal          jsonb NOT NULL,
    status            trial_status NOT NULL DEFAULT 'PENDING',
    score             double precision,
    params_path       text,
    params_sha256     text,
    params_size_bytes bigint,
    datetime_started  timestamptz NOT NULL DEFAULT now(),
    datetime_stopped  timestamptz,
    CONSTRAINT trials_no_key UNIQUE (sub_train_job_id, no)
);
CREATE INDEX trials_best ON trials (sub_train_job_id, score DESC)
    WHERE status = 'COMPLETED' AND params_path IS NOT NULL;
CREATE INDEX trials_live ON trials (status) WHERE status IN ('PENDING', 'RUNNING');

CREATE TABLE trial_logs (
    id        bigserial PRIMARY KEY,
    trial_id  uuid NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    datetime  timestamptz NOT NULL DEFAULT now(),
    kind      trial_log_kind NOT NULL,
    payload   jsonb NOT NULL
);
CREATE INDEX trial_logs_trial ON trial_logs (trial_id, id);

CREATE TABLE inference_jobs (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id),
    train_job_id     uuid NOT NULL REFERENCES train_jobs (id),
    budget           jsonb NOT NULL DEFAULT '{}',
    status           job_status NOT NULL DEFAULT 'STARTED',
    error            text,
    datetime_started timestamptz NOT NULL DEFAULT now(),
    datetime_stopped timestamptz
);
CREATE UNIQUE INDEX inference_jobs_one_live_per_train_job ON inference_jobs (train_job_id)
    WHERE status IN ('STARTED', 'RUNNING');
CREATE INDEX inference_jobs_user ON inference_jobs (user_id, datetime_started DESC);

-- The trials an inference job serves, and how many worker replicas each should have.
CREATE TABLE inference_job_trials (
    inference_job_id uuid NOT NULL REFERENCES inference_jobs (id) ON DELETE CASCADE,
    trial_id         uuid NOT NULL REFERENCES trials (id),
    desired_replicas integer NOT NULL DEFAULT 1 CHECK (desired_replicas > 0),
    PRIMARY KEY (inference_job_id, trial_id)
);
CREATE INDEX inference_job_trials_trial ON inference_job_trials (trial_id);

-- Work a worker holds for a while: advising or training a sub train job (one row per parallel
-- slot), or serving one replica of a trial of an inference job. A lease whose `expires_at` has
-- passed is free to claim again (SELECT ... FOR UPDATE SKIP LOCKED).
CREATE TABLE work_leases (
    id               uuid PRIMARY KEY,
    kind             lease_kind NOT NULL,
    sub_train_job_id uuid REFERENCES sub_train_jobs (id) ON DELETE CASCADE,
    inference_job_id uuid,
    trial_id         uuid,
    slot             integer NOT NULL DEFAULT 0 CHECK (slot >= 0),
    worker_id        uuid REFERENCES workers (id) ON DELETE SET NULL,
    expires_at       timestamptz,
    datetime_claimed timestamptz,
    FOREIGN KEY (inference_job_id, trial_id)
        REFERENCES inference_job_trials (inference_job_id, trial_id) ON DELETE CASCADE,
    CONSTRAINT work_leases_subject CHECK (
        (kind IN ('ADVISE', 'TRAIN') AND sub_train_job_id IS NOT NULL AND inference_job_id IS NULL)
        OR (kind = 'SERVE' AND sub_train_job_id IS NULL AND inference_job_id IS NOT NULL
            AND trial_id IS NOT NULL)
    )
);
CREATE UNIQUE INDEX work_leases_sub_train_job_slot_key ON work_leases (kind, sub_train_job_id, slot)
    WHERE sub_train_job_id IS NOT NULL;
CREATE UNIQUE INDEX work_leases_serving_slot_key ON work_leases (inference_job_id, trial_id, slot)
    WHERE kind = 'SERVE';
CREATE INDEX work_leases_claimable ON work_leases (kind, expires_at);
CREATE INDEX work_leases_worker ON work_leases (worker_id);
